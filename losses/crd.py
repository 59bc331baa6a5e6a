"""CRD (contrastive representation distillation): linear + L2 embeddings of both pooled features,
two memory banks (student / teacher) of every training sample, K class-aware negatives per sample,
NCE-style loss on both sides; normalisation constants Z fixed at the first batch.

Negatives are drawn here, from the batch's dataset indices and the training labels: for each
anchor K distinct indices, uniformly among the samples of other classes (as RepDistiller's
CIFAR100InstanceSample in 'exact' mode). They are drawn on the training device, from a generator
on that device whose state is checkpointed: nothing is made on the host, and the step has no host
synchronisation (the constants, temperature and momentum stay on the device). Two exact samplers:
random keys over all N samples (B x N work, used where N is small: CIFAR), and, where N is large
(ImageNet, N = 1.28 M), a few more than K draws with replacement whose distinct values are
subsampled (B x ~1.05 K work); `candidate_count` says which.

Under --compile the sampler (random keys need their generator) and the one-time setting of the
normalisation constants run outside the compiled graph; the scores, the loss and the memory
update are compiled. Under --amp the embeddings, scores and loss are computed in float32."""
import math

import torch
import torch.nn as nn

from core.compile import outside_graph
from core.distributed import all_gather_cat, all_reduce_mean
from core.precision import full_precision, upcast

from .base import HParam, LossWeights, Method, MethodError


class Embed(nn.Module):
    def __init__(self, dim_in, dim_out=128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        x = self.linear(x.flatten(1))
        return x / x.pow(2).sum(1, keepdim=True).sqrt()   # no epsilon, as the reference


class ContrastMemory(nn.Module):
    """Buffers `params` = [K, T, Z_student_anchor, Z_teacher_anchor, momentum] (Z = -1 until the
    first forward), `memory_v1` (student bank), `memory_v2` (teacher bank)."""

    def __init__(self, dim, n_data, k, temperature=0.07, momentum=0.5):
        super().__init__()
        self.register_buffer("params", torch.tensor([k, temperature, -1.0, -1.0, momentum]))
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_v1", torch.rand(n_data, dim).mul_(2 * bound).add_(-bound))
        self.register_buffer("memory_v2", torch.rand(n_data, dim).mul_(2 * bound).add_(-bound))
        self.constants_set = False   # mirrors params[2:4] >= 0 without reading the device
        self.register_load_state_dict_post_hook(lambda module, _: module._read_constants_flag())

    def _read_constants_flag(self):
        self.constants_set = bool((self.params[2:4] >= 0).all())

    @outside_graph
    def set_constants(self, out_s, out_t):
        """Z of each side from the first batch (of all processes), stored in the buffer (its dtype)."""
        n_data = self.memory_v1.shape[0]
        if self.params[2].item() < 0:
            self.params[2] = all_reduce_mean(out_s.mean().detach()) * n_data
        if self.params[3].item() < 0:
            self.params[3] = all_reduce_mean(out_t.mean().detach()) * n_data
        self.constants_set = True

    def forward(self, v1, v2, index, contrast_idx):
        """v1 student embedding, v2 teacher embedding. Returns (student-anchor scores against the
        teacher bank, teacher-anchor scores against the student bank), each (B, K+1, 1) / Z."""
        k = contrast_idx.shape[1] - 1
        # read from a copy while the constants are still to be written into the same buffer
        # (autograd keeps what it divides by)
        params = self.params if self.constants_set else self.params.clone()
        temperature, momentum = params[1], params[4]
        b, dim = v1.shape
        w1 = self.memory_v1.index_select(0, contrast_idx.reshape(-1)).detach().view(b, k + 1, dim)
        w2 = self.memory_v2.index_select(0, contrast_idx.reshape(-1)).detach().view(b, k + 1, dim)
        out_t = torch.exp(torch.bmm(w1, v2.view(b, dim, 1)) / temperature)   # teacher anchor
        out_s = torch.exp(torch.bmm(w2, v1.view(b, dim, 1)) / temperature)   # student anchor
        if not self.constants_set:
            self.set_constants(out_s, out_t)
        out_s = out_s / self.params[2]
        out_t = out_t / self.params[3]
        with torch.no_grad():
            # every process applies every process's updates, so that the banks stay identical
            index = all_gather_cat(index)
            for bank, v in ((self.memory_v1, all_gather_cat(v1.detach())), (self.memory_v2, all_gather_cat(v2.detach()))):
                rows = bank.index_select(0, index) * momentum + v * (1 - momentum)
                bank.index_copy_(0, index, rows / rows.pow(2).sum(1, keepdim=True).sqrt())
        return out_s, out_t


def contrast_loss(x, n_data, eps=1e-7):
    """-(1/B) [sum log(P_pos / (P_pos + K/N + eps)) + sum log((K/N) / (P_neg + K/N + eps))]."""
    b, m = x.shape[0], x.shape[1] - 1
    c = m / float(n_data)
    pos = x[:, 0]
    neg = x[:, 1:]
    log_d1 = torch.log(pos / (pos + c + eps))
    log_d0 = torch.log(torch.full_like(neg, c) / (neg + c + eps))
    return -(log_d1.sum() + log_d0.sum()) / b


@outside_graph
def sample_negatives(index, labels, k, generator):
    """(B, K+1) indices on the labels' device: column 0 the anchor itself, then K distinct indices
    of other classes, uniformly without replacement (random keys on the device, same-class keys
    masked, top-K). `generator` lives on the labels' device."""
    index = index.to(labels.device)
    keys = torch.rand(len(index), len(labels), generator=generator, device=labels.device)
    keys.masked_fill_(labels[index][:, None] == labels[None, :], -1.0)
    return torch.cat([index[:, None], keys.topk(k, dim=1).indices], 1)


def candidate_count(k, pool, n_data, bits=64):
    """How many with-replacement draws from the smallest other-class pool (`pool` indices) hold k
    distinct ones except with probability below 2**-bits, or None when the random-key sampler is
    cheaper (that count is not below n_data / 4). The distinct count of c draws has mean
    pool * (1 - (1 - 1/pool)^c) and, as each draw moves it by at most one, falls t below that
    mean with probability at most exp(-2 t^2 / c) (McDiarmid)."""
    def slack(c):
        mean = pool * -math.expm1(c * math.log1p(-1.0 / pool))
        return mean - k - math.sqrt(c * bits * math.log(2) / 2)

    hi = k
    while slack(hi) < 0:
        hi *= 2
        if hi * 4 > n_data:
            return None
    lo = max(k, hi // 2)
    while lo < hi:   # the smallest count with a non-negative slack
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if slack(mid) < 0 else (lo, mid)
    return hi if hi * 4 <= n_data else None


@outside_graph
def sample_negatives_by_candidates(index, labels, k, generator, by_class, class_start, class_count,
                                   n_candidates):
    """The sampler for large N, with the same distribution as `sample_negatives`. Per anchor of
    class c: n_candidates uniform draws with replacement from the N - n_c samples of other
    classes (`by_class` lists the dataset indices grouped by class, class c occupying
    [class_start[c], class_start[c] + class_count[c])), then K of the distinct values, chosen by
    random keys. Given the set of distinct values, every K-subset of it is equally likely, and
    that set's law is the same under any relabelling of the pool, so every K-subset of the pool
    is equally likely. `candidate_count` makes fewer than K distinct values (which would repeat
    an index) rarer than 2**-64 per anchor. The integer draws are 62-bit numbers reduced modulo
    the pool size, which biases them by less than pool / 2**62."""
    device = labels.device
    index = index.to(device)
    cls = labels[index]
    start, count = class_start[cls][:, None], class_count[cls][:, None]
    pool = len(labels) - count
    draws = torch.randint(0, 2 ** 62, (len(index), n_candidates), generator=generator, device=device)
    position = draws % pool                                   # uniform in [0, pool)
    position = position + (position >= start) * count         # skip the anchor's class block
    candidates = by_class[position].sort(dim=1).values
    repeated = torch.zeros_like(candidates, dtype=torch.bool)
    repeated[:, 1:] = candidates[:, 1:] == candidates[:, :-1]
    keys = torch.rand(candidates.shape, generator=generator, device=device)
    keys.masked_fill_(repeated, -1.0)
    chosen = candidates.gather(1, keys.topk(k, dim=1).indices)
    return torch.cat([index[:, None], chosen], 1)


class CRD(Method):
    name = "crd"
    standard_weights = LossWeights(ce=1.0, kd=0.0, distill=0.8)
    hparams = (HParam("feat_dim", 128, "embedding width", "int", bounds="positive"),
               HParam("nce_k", 16384, "negatives per sample", "int", bounds="positive"),
               HParam("nce_t", 0.07, "temperature", bounds="positive"),
               HParam("nce_m", 0.5, "memory momentum", bounds="momentum"))

    def __init__(self, ctx, weights=None, hp=None):
        super().__init__(ctx, weights, hp)
        if ctx.train_labels is None:
            raise MethodError("CRD needs the training labels (class-aware negatives)")
        self.n_data = ctx.n_data
        self.k = self.hp["nce_k"]
        min_pool = min(int((ctx.train_labels != c).sum()) for c in ctx.train_labels.unique())
        if self.k > min_pool:
            raise MethodError(f"--nce-k {self.k} exceeds the {min_pool} samples of other classes available; "
                              f"lower --nce-k")
        dim = self.hp["feat_dim"]
        self.embed_s = Embed(ctx.s_shapes[-1][1], dim)
        self.embed_t = Embed(ctx.t_shapes[-1][1], dim)
        self.contrast = ContrastMemory(dim, self.n_data, self.k, self.hp["nce_t"], self.hp["nce_m"])
        self.register_buffer("labels", ctx.train_labels.clone())
        # the large-N sampler's tables (derived from the labels, so not in the checkpoint)
        class_count = torch.bincount(ctx.train_labels)
        self.n_candidates = candidate_count(self.k, self.n_data - int(class_count.max()), self.n_data)
        if self.n_candidates is not None:
            self.register_buffer("by_class", torch.argsort(ctx.train_labels, stable=True), persistent=False)
            self.register_buffer("class_start", torch.cumsum(class_count, 0) - class_count, persistent=False)
            self.register_buffer("class_count", class_count, persistent=False)
        self.seed = ctx.seed + 1
        self._generator = None        # made on the training device at the first draw
        self._saved_generator = None  # a checkpointed state waiting for that draw

    def scores(self, f_s, f_t, index, contrast_idx):
        return self.contrast(self.embed_s(f_s), self.embed_t(f_t), index, contrast_idx)

    def crd_loss(self, f_s, f_t, index, contrast_idx):
        # in float32 under --amp: exp(<v, w> / 0.07) turns bfloat16's 0.4 % error of the dot
        # product into ~6 % errors of the scores, and the memory banks are float32
        with full_precision(f_s.device):
            out_s, out_t = self.scores(upcast(f_s), upcast(f_t), index, contrast_idx)
            return contrast_loss(out_s, self.n_data) + contrast_loss(out_t, self.n_data)

    def draw_negatives(self, index):
        """(B, K+1): the anchors' indices, then K negatives each (see the module's docstring)."""
        if self.n_candidates is None:
            return sample_negatives(index, self.labels, self.k, self.generator())
        return sample_negatives_by_candidates(index, self.labels, self.k, self.generator(), self.by_class,
                                              self.class_start, self.class_count, self.n_candidates)

    def distill_loss(self, s, t, batch, epoch):
        contrast_idx = self.draw_negatives(batch["index"])
        return self.crd_loss(s.feats[-1], t.feats[-1], batch["index"], contrast_idx.to(batch["index"].device))

    # ------------------------------------------------------------------ the sampler's generator
    @outside_graph
    def generator(self):
        """The negative sampler's generator, on the device of the labels (the training device)."""
        device = self.labels.device
        if self._generator is None or self._generator.device != device:
            g = torch.Generator(device=device).manual_seed(self.seed)
            if self._saved_generator is not None:
                saved = self._saved_generator
                if saved["device"] != device.type:
                    raise MethodError(f"this CRD checkpoint's negative sampler ran on {saved['device']}; "
                                      f"resume it on {saved['device']} (its random stream cannot move to "
                                      f"{device.type})")
                g.set_state(saved["state"])
                self._saved_generator = None
            self._generator = g
        return self._generator

    # the generator travels with the module's state (exact resume)
    def get_extra_state(self):
        if self._generator is None and self._saved_generator is not None:
            return {"generator": self._saved_generator["state"], "device": self._saved_generator["device"]}
        g = self.generator()
        return {"generator": g.get_state(), "device": g.device.type}

    def set_extra_state(self, state):
        self._saved_generator = {"state": state["generator"], "device": state.get("device", "cpu")}
        self._generator = None
