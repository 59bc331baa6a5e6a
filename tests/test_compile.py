"""The compiled training step (torch.compile, inductor on the CPU) computes what the eager step
computes: loss terms, logits and gradients within rtol 1e-4 for every method of the registry, over
steps that include an epoch's last, smaller batch; and a compiled run does not recompile as epochs
go by.

The steps run in float64, so that what is compared is the computation, not float32 rounding:
inductor fuses and orders the long reductions of a convolution's weight gradient differently,
which in float32 moves single elements of SSKD's first-layer gradient (the ss term at
weight 10 and temperature 0.5) by ~2e-3 of the gradient's scale; in float64 the two agree to
~1e-14."""
import contextlib
import copy

import pytest
import torch

import losses
from datasets import InMemoryLoader
from engine.distill import Distiller

from cpu_bf16 import bf16_convolutions
from test_distill_step import _setup

pytestmark = pytest.mark.slow


def _close(want, got, what, scale=None):
    scale = scale or max(want.detach().abs().max().item(), 1e-12)
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-4, atol=1e-4 * scale,
                               msg=lambda m: f"{what}: {m}")


def _step(distiller, optimizer, batch):
    terms, logits = distiller(batch, 1)
    optimizer.zero_grad(set_to_none=True)
    sum(terms.values()).backward()
    grads = [None if p.grad is None else p.grad.clone() for p in distiller.trainable_parameters()]
    optimizer.step()
    return terms, logits, grads


# on one worker: the networks' graphs are compiled once, then read from the session's inductor cache
@pytest.mark.xdist_group("compiled_steps")
@pytest.mark.parametrize("name", sorted(losses.METHODS))
def test_compiled_step_equals_eager(name):
    torch._dynamo.reset()
    # the smallest network on both sides: the method's graph is what is new in each case, the
    # networks' graphs come from the session's inductor cache after the first method
    # batches of 16, 16 and the last 8 images through the networks (SSKD: 4, 4 and 2 originals, four
    # rotations each): the same shapes for every method, so a network graph compiled once is reused
    per_batch = 4 if losses.METHODS[name].views == "rotations" else 16
    eager, _, data = _setup(name, teacher="resnet8", n_data=per_batch * 5 // 2)
    eager.double()
    twin = copy.deepcopy(eager)
    compiled = Distiller(twin.student, twin.method, twin.teacher, compile_mode="default")
    opts = [torch.optim.SGD(d.trainable_parameters(), lr=0.05, momentum=0.9) for d in (eager, compiled)]
    batches = list(InMemoryLoader(data, per_batch, train=True, views=eager.method.views,
                                  generator=torch.Generator().manual_seed(3)))
    assert [len(b["label"]) for b in batches] == [per_batch, per_batch, per_batch // 2]
    for d in (eager, compiled):
        d.train()
    for i, batch in enumerate(batches):
        batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
        # every step from the same state: float32 rounding differences are not carried forward
        compiled.student.load_state_dict(eager.student.state_dict())
        compiled.method.load_state_dict(eager.method.state_dict())
        (t0, l0, g0), (t1, l1, g1) = (_step(d, o, batch) for d, o in zip((eager, compiled), opts))
        assert t0.keys() == t1.keys()
        for k in t0:
            _close(t0[k], t1[k], f"{name} step {i} term {k}")
        assert (l0 is None) == (l1 is None)
        if l0 is not None:
            _close(l0, l1, f"{name} step {i} logits")
        # scaled by the largest gradient: some are zero but for rounding (conv biases before BN)
        scale = max(g.abs().max().item() for g in g0 if g is not None)
        for j, (a, b) in enumerate(zip(g0, g1)):
            assert (a is None) == (b is None), f"{name} step {i}: gradient {j} is None in one mode only"
            if a is not None:
                _close(a, b, f"{name} step {i} gradient {j}", scale)
    # the method's state (CRD's memory banks, constants and sampler) went the same way
    for (k, a), b in zip(eager.method.state_dict().items(), compiled.method.state_dict().values()):
        if isinstance(a, torch.Tensor):
            _close(a.float(), b.float(), f"{name} method state {k}")


@pytest.mark.parametrize("mode", [["--compile"], ["--amp", "bf16", "--channels-last"]], ids=["compile", "bf16-nhwc"])
def test_run_resumes_exactly_in_each_mode(mode, small_teacher, tmp_path, monkeypatch):
    """A CRD run stopped as its last epoch starts and resumed from the checkpoint before it ends
    bit for bit where the uninterrupted run of the same mode ends. Compiled, epochs after the first
    add no compiled graphs (epoch 2's new lr, its epoch number and the last, smaller batch do not
    cause recompiles)."""
    import engine.trainer
    import train_student
    from core.checkpoint import load_file

    args = ["--dataset", "digits", "--no-progress", "--save-every", "0", "--teacher", small_teacher["ckpt"],
            "--save-dir", str(tmp_path), "--method", "crd", "--student", "resnet8", "--epochs", "2",
            "--lr-decay-epochs", "2", "--nce-k", "256", *mode]
    real = engine.trainer.evaluate
    graphs = []

    def counting(*a, **k):
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        return real(*a, **k)

    # bf16 on a CPU without native bfloat16: convolutions at float32 speed (see cpu_bf16)
    with bf16_convolutions() if "--amp" in mode else contextlib.nullcontext():
        torch._dynamo.reset()
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        monkeypatch.setattr(engine.trainer, "evaluate", counting)
        train_student.main(args + ["--name", "straight"])
        # counted after each epoch
        assert len(graphs) == 2 and graphs[0] == graphs[1], graphs
        assert (graphs[0] > before) == ("--compile" in mode)

        real_epoch = engine.trainer.train_one_epoch

        def crash(distiller, loader, optimizer, epoch, *a, **k):
            if epoch == 2:   # after epoch 1 and its checkpoint, stop as epoch 2 starts
                raise KeyboardInterrupt
            return real_epoch(distiller, loader, optimizer, epoch, *a, **k)

        monkeypatch.setattr(engine.trainer, "evaluate", real)
        monkeypatch.setattr(engine.trainer, "train_one_epoch", crash)
        with pytest.raises(KeyboardInterrupt):
            train_student.main(args + ["--name", "crashed"])
        monkeypatch.setattr(engine.trainer, "train_one_epoch", real_epoch)
        assert load_file(str(tmp_path / "crashed" / "ckpt" / "last.pth"))["epoch"] == 1
        train_student.main(args + ["--name", "crashed", "--resume"])
    a = load_file(str(tmp_path / "straight" / "ckpt" / "last.pth"))
    b = load_file(str(tmp_path / "crashed" / "ckpt" / "last.pth"))
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["extra"]["method"].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b["extra"]["method"][k]), k


@pytest.mark.parametrize("cached", [False, True], ids=["images", "cached-features"])
def test_linear_probe_compiled_equals_eager(cached, digits_teacher, tmp_path):
    """eval_linear.py --compile (the backbone's features and the head's loss compiled) trains the
    head the eager probe trains: the same weights within rtol 1e-4 after 2 epochs, the same top-1."""
    import shutil

    import eval_linear
    from core.checkpoint import load_file

    heads, results = {}, {}
    for mode in ("eager", "compile"):
        torch._dynamo.reset()
        save = tmp_path / mode
        save.mkdir()
        # a copy outside the run folder: each mode writes its own result instead of reusing the other's
        ckpt = shutil.copy(digits_teacher["ckpt"], save / "teacher.pth")
        results[mode] = eval_linear.main(
            ["--checkpoint", str(ckpt), "--dataset", "digits", "--epochs", "2", "--eval-every", "2",
             "--batch-size", "256", "--lr", "0.1", "--no-progress", "--save", str(save), "--workers", "0",
             *(["--use-cache"] if cached else []), *(["--compile"] if mode == "compile" else [])])
        heads[mode] = load_file(str(save / "linear_head.pth"))["state_dict"]
    for k, want in heads["eager"].items():
        _close(want, heads["compile"][k], f"head {k}")
    assert abs(results["eager"]["last"]["top1"] - results["compile"]["last"]["top1"]) < 0.3
    assert results["eager"]["last"]["top1"] > 50   # the probe learned something
