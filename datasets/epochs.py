"""What both batch loaders share about epochs: each epoch is drawn from the loader's generator, so
the generator's state at the epoch's start (`epoch_state`) and a step number say exactly where a
run stands, and `resume_at` makes the next pass that epoch again from that step."""


class ResumableEpochs:
    def _init_epochs(self):
        self.epoch_state = self.generator.get_state()
        self._resume = None

    def resume_at(self, epoch_state, step):
        """Make the next pass the epoch that began with the generator at `epoch_state`, from batch
        `step` on (a mid-epoch checkpoint): the same order and augmentation, the first `step`
        batches skipped."""
        self._resume = (epoch_state, step)

    def _begin_epoch(self):
        """Called as a pass starts: returns how many batches to skip."""
        skip = 0
        if self._resume is not None:
            (state, skip), self._resume = self._resume, None
            self.generator.set_state(state)
        self.epoch_state = self.generator.get_state()
        return skip
