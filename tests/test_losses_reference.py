"""Every distillation objective against the reference implementations' own numbers
(tests/fixtures/distill_reference_wrn.pt; tolerances from its README)."""
import pytest
import torch
import torch.nn.functional as F

import losses
from losses import Context, LossWeights as Weights
from models import Outputs
from losses.ab import Connector, ab_terms
from losses.adaptors import ConvReg
from losses.at import attention_terms
from losses.crd import ContrastMemory, Embed, contrast_loss
from losses.fsp import fsp_terms
from losses.ft import Paraphraser, Translator, factor_loss
from losses.kdsvd import kdsvd_terms
from losses.nst import nst_terms
from losses.pkt import pkt_loss
from losses.rkd import rkd_loss
from losses.sp import similarity_loss
from losses.sskd import head_pretrain_loss, projection_head, sskd_terms
from reference_checks import assert_grad, assert_loss, assert_param_grads, load_reference

REF = load_reference()
MAIN = REF["repdistiller"]
EXTRA = REF["repdistiller_extra"]["resnet56_to_resnet20"]


def leaf(t):
    return t.detach().double().requires_grad_()


def consts(ts):
    return [t.double() for t in ts]


def load_module(module, state, train=True):
    module.load_state_dict(state, strict=True)
    return module.double().train(train)


# ---------------------------------------------------------------------------- logit / pooled-feature losses
def test_kd():
    rec = MAIN["methods"]["kd"]
    s = leaf(rec["inputs"]["logit_s"])
    loss = losses.kd_loss(s, rec["inputs"]["logit_t"].double(), 4.0)
    assert_loss(loss, rec["loss"])
    loss.backward()
    assert_grad(s.grad, rec["grad_inputs"]["logit_s"])


@pytest.mark.parametrize("section,name,fn,tap,rtol", [
    ("main", "similarity", similarity_loss, 3, 1e-6),
    ("main", "rkd", rkd_loss, 4, 1e-5),
    ("main", "pkt", pkt_loss, 4, 1e-5),
    ("extra", "similarity", similarity_loss, 3, 1e-6),
    ("extra", "rkd", rkd_loss, 4, 1e-5),
    ("extra", "pkt", pkt_loss, 4, 1e-5),
])
def test_single_tap_losses(section, name, fn, tap, rtol):
    pair = MAIN if section == "main" else EXTRA
    rec = pair["methods"][name]
    f_s = leaf(pair["common"]["feat_s"][tap])
    loss = fn(f_s, pair["common"]["feat_t"][tap].double())
    assert_loss(loss, rec["loss"], rtol)
    loss.backward()
    assert_grad(f_s.grad, rec["grad_inputs"][f"feat_s_{tap}"])


@pytest.mark.parametrize("name,fn,taps,rtol", [
    ("attention", attention_terms, (1, 2, 3), 1e-6),
    ("nst", nst_terms, (1, 2, 3), 1e-6),
    ("kdsvd", kdsvd_terms, (1, 2, 3), 1e-5),
    ("fsp", fsp_terms, (0, 1, 2, 3), 1e-6),
])
def test_multi_tap_losses(name, fn, taps, rtol):
    rec = MAIN["methods"][name]
    f_s = [leaf(MAIN["common"]["feat_s"][i]) for i in taps]
    terms = fn(f_s, consts(MAIN["common"]["feat_t"][i] for i in taps))
    if rec["terms"] is not None:
        for got, want in zip(terms, rec["terms"]):
            assert_loss(got, want, rtol)
    loss = sum(terms)
    assert_loss(loss, rec["loss"], rtol)
    loss.backward()
    for i, f in zip(taps, f_s):
        assert_grad(f.grad, rec["grad_inputs"][f"feat_s_{i}"])


# ---------------------------------------------------------------------------- losses with adaptors
@pytest.mark.parametrize("name", ["hint", "hint_down", "hint_up", "hint_same_hw_smaller"])
def test_fitnet_regressor(name):
    rec = MAIN["methods"][name]
    f_s, f_t = leaf(rec["inputs"]["feat_s"]), rec["inputs"]["feat_t"].double()
    reg = load_module(ConvReg(f_s.shape, f_t.shape), rec["module_state"]["regressor"])
    loss = F.mse_loss(reg(f_s), f_t)
    assert_loss(loss, rec["loss"])
    loss.backward()
    assert_grad(f_s.grad, rec["grad_inputs"]["feat_s"])
    assert_param_grads(reg, rec["grad_params"]["regressor"])


def test_correlation():
    rec = MAIN["methods"]["correlation"]
    ctx = _ctx(MAIN)
    method = losses.CC(ctx, Weights(1, 0, 0.02))
    load_module(method.embed_s, rec["module_state"]["embed_s"])
    load_module(method.embed_t, rec["module_state"]["embed_t"])
    f_s = leaf(MAIN["common"]["feat_s"][4])
    loss = method.distill_loss(Outputs([None] * 4 + [f_s], None),
                               Outputs([None] * 4 + [MAIN["common"]["feat_t"][4].double()], None), {}, 1)
    assert_loss(loss, rec["loss"])
    loss.backward()
    assert_grad(f_s.grad, rec["grad_inputs"]["feat_s_4"])
    assert_param_grads(method.embed_s, rec["grad_params"]["embed_s"])
    assert_param_grads(method.embed_t, rec["grad_params"]["embed_t"])


def test_vid():
    rec = MAIN["methods"]["vid"]
    method = losses.VID(_ctx(MAIN), Weights(1, 0, 1))
    load_module(method.vid, rec["module_state"]["vid"])
    f_s = [leaf(MAIN["common"]["feat_s"][i]) for i in (1, 2, 3)]
    s = Outputs([None] + f_s + [None], None)
    t = Outputs([None] + consts(MAIN["common"]["feat_t"][1:4]) + [None], None)
    terms = method.terms(s, t)
    for got, want in zip(terms, rec["terms"]):
        assert_loss(got, want)
    loss = sum(terms)
    assert_loss(loss, rec["loss"])
    loss.backward()
    for i, f in zip((1, 2, 3), f_s):
        assert_grad(f.grad, rec["grad_inputs"][f"feat_s_{i}"])
    assert_param_grads(method.vid, rec["grad_params"]["vid"])
    fresh = losses.VID(_ctx(MAIN), Weights(1, 0, 1))
    torch.testing.assert_close(fresh.vid[0].log_scale, rec["module_state"]["vid"]["0.log_scale"])


@pytest.mark.parametrize("name", ["abound", "abound_connector"])
def test_ab(name):
    rec = MAIN["methods"][name]
    f_s = [leaf(f) for f in rec["inputs"]["feat_s_pre"]]
    f_t = consts(rec["inputs"]["feat_t_pre"])
    connector = load_module(Connector([f.shape for f in f_s], [f.shape for f in f_t]), rec["module_state"]["connector"])
    terms = ab_terms(connector(f_s), f_t)
    for got, want in zip(terms, rec["terms"]):
        assert_loss(got, want)
    loss = sum(terms)
    assert_loss(loss, rec["loss"])
    loss.backward()
    for i, f in enumerate(f_s, 1):
        assert_grad(f.grad, rec["grad_inputs"][f"feat_s_pre_{i}"])
    assert_param_grads(connector, rec["grad_params"].get("connector", {}))


def test_ft_init_and_main():
    rec_init = EXTRA["methods"]["factor_init"]
    f_t = EXTRA["common"]["feat_t"][3].double()
    para = load_module(Paraphraser(f_t.shape), rec_init["module_state"]["paraphraser"])
    _, rec_out = para(f_t)
    loss = F.mse_loss(rec_out, f_t)
    assert_loss(loss, rec_init["loss"])
    loss.backward()
    assert_param_grads(para, rec_init["grad_params"]["paraphraser"])

    rec = EXTRA["methods"]["factor"]
    f_s = leaf(EXTRA["common"]["feat_s"][3])
    para = load_module(Paraphraser(f_t.shape), rec["module_state"]["paraphraser"], train=False)
    trans = load_module(Translator(f_s.shape, f_t.shape), rec["module_state"]["translator"])
    code, _ = para(f_t)
    loss = factor_loss(trans(f_s), code.detach())
    assert_loss(loss, rec["loss"])
    loss.backward()
    assert_grad(f_s.grad, rec["grad_inputs"]["feat_s_3"])
    assert_param_grads(trans, rec["grad_params"]["translator"])


def test_crd_two_steps():
    rec = MAIN["methods"]["crd"]
    hp = rec["hparams"]
    state = rec["module_state"]["crd"]
    embed_s = load_module(Embed(128, 128), {k[8:]: v for k, v in state.items() if k.startswith("embed_s.")})
    embed_t = load_module(Embed(128, 128), {k[8:]: v for k, v in state.items() if k.startswith("embed_t.")})
    memory = ContrastMemory(hp["feat_dim"], hp["n_data"], hp["nce_k"], hp["nce_t"], hp["nce_m"])
    load_module(memory, {k[9:]: v for k, v in state.items() if k.startswith("contrast.")})
    for step in rec["steps"]:
        for p in list(embed_s.parameters()) + list(embed_t.parameters()):
            p.grad = None
        f_s = leaf(step["feat_s"])
        out_s, out_t = memory(embed_s(f_s), embed_t(step["feat_t"].double()), step["index"], step["contrast_idx"])
        torch.testing.assert_close(out_s.float(), step["out_v1_student_anchor"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out_t.float(), step["out_v2_teacher_anchor"], rtol=1e-5, atol=1e-6)
        assert memory.params[2].item() == pytest.approx(step["Z_v1"], rel=1e-9)
        assert memory.params[3].item() == pytest.approx(step["Z_v2"], rel=1e-9)
        loss = contrast_loss(out_s, hp["n_data"]) + contrast_loss(out_t, hp["n_data"])
        assert_loss(loss, step["loss"])
        loss.backward()
        assert_grad(f_s.grad, step["grad_inputs"]["feat_s_4"])
        assert_param_grads(embed_s, step["grad_params"]["embed_s"])
        assert_param_grads(embed_t, step["grad_params"]["embed_t"])
        torch.testing.assert_close(memory.memory_v1[step["index"]].float(), step["memory_v1_rows_after"],
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(memory.memory_v2[step["index"]].float(), step["memory_v2_rows_after"],
                                   rtol=1e-5, atol=1e-6)


def test_crd_negative_sampler_is_class_aware():
    from losses.crd import sample_negatives
    labels = MAIN["methods"]["crd"]["dataset_labels"]
    index = torch.tensor([0, 7, 123, 499])
    idx = sample_negatives(index, labels, 64, torch.Generator().manual_seed(0))
    assert idx.shape == (4, 65) and torch.equal(idx[:, 0], index)
    for row, anchor in zip(idx, index):
        negatives = row[1:]
        assert len(set(negatives.tolist())) == 64
        assert (labels[negatives] != labels[anchor]).all()
    # every other-class sample can be drawn: over many draws the pool is covered uniformly
    counts = torch.zeros(len(labels))
    g = torch.Generator().manual_seed(1)
    for _ in range(1000):
        counts += torch.bincount(sample_negatives(index[:1], labels, 64, g)[0, 1:], minlength=len(labels))
    pool = labels != labels[0]
    assert (counts[~pool] == 0).all()
    expected = 1000 * 64 / pool.sum().item()
    assert (counts[pool] - expected).abs().max() < 0.5 * expected



def test_crd_sampler_choice_by_dataset_size():
    from losses.crd import candidate_count
    assert candidate_count(16384, 50000 - 500, 50000) is None   # CIFAR-100: random keys over N
    c = candidate_count(16384, 1281167 - 1300, 1281167)          # ImageNet: ~K draws, not N
    assert 16384 < c < 1.05 * 16384


def _candidate_draws(labels, k, rows, anchor, n_candidates, seed=0):
    # pools this small would take the random-key sampler (candidate_count gives None); the count
    # here leaves fewer than k distinct candidates a ~1e-9 event per row
    from losses.crd import sample_negatives_by_candidates
    count = torch.bincount(labels)
    g = torch.Generator().manual_seed(seed)
    index = torch.full((rows,), anchor)
    return sample_negatives_by_candidates(index, labels, k, g, torch.argsort(labels, stable=True),
                                          torch.cumsum(count, 0) - count, count, n_candidates)


def test_crd_candidate_sampler_draws_uniform_subsets_of_other_classes():
    # classes of 10, 20 and 30 samples, interleaved; the anchor's class (1) is in the middle block
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)[torch.randperm(60, generator=torch.Generator().manual_seed(3))]
    anchor = int((labels == 1).nonzero()[0])
    k, rows = 5, 20000
    idx = _candidate_draws(labels, k, rows, anchor, n_candidates=16)
    assert idx.shape == (rows, k + 1) and (idx[:, 0] == anchor).all()
    negatives = idx[:, 1:]
    assert (labels[negatives] != 1).all()
    assert (negatives.sort(1).values.diff(dim=1) > 0).all()     # K distinct per row
    pool = (labels != 1).nonzero().flatten()
    # each pool member with probability k / |pool| per row (chi-square, 39 degrees of freedom)
    counts = torch.bincount(negatives.flatten(), minlength=60)[pool].double()
    expected = rows * k / len(pool)
    assert ((counts - expected) ** 2 / expected).sum() < 39 + 6 * (2 * 39) ** 0.5
    # and each pair equally often: the subsets, not only their members, are uniform (779 d.o.f.)
    position = torch.full((60,), -1)
    position[pool] = torch.arange(len(pool))
    p = position[negatives]
    pairs = torch.zeros(len(pool), len(pool))
    for a in range(k):
        for b in range(a + 1, k):
            lo, hi = torch.minimum(p[:, a], p[:, b]), torch.maximum(p[:, a], p[:, b])
            pairs.index_put_((lo, hi), torch.ones(rows), accumulate=True)
    observed = pairs[torch.triu_indices(len(pool), len(pool), 1).unbind()]
    expected = rows * k * (k - 1) / 2 / len(observed)
    assert ((observed - expected) ** 2 / expected).sum() < 779 + 6 * (2 * 779) ** 0.5


def test_crd_uses_the_candidate_sampler_for_large_datasets():
    n, k = 200000, 4096
    labels = torch.randint(0, 1000, (n,), generator=torch.Generator().manual_seed(0))
    ctx = Context([(2, 16)], [(2, 32)], [(2, 16)], [(2, 32)], "resnet8", "resnet14", 1000, n_data=n,
                  train_labels=labels)
    method = losses.build("crd", ctx, losses.resolve_weights("crd"), {"nce_k": k, "feat_dim": 8})
    assert method.n_candidates is not None and method.n_candidates < 1.1 * k
    assert "by_class" not in method.state_dict()          # derived tables, not checkpointed
    index = torch.tensor([0, 5, 99999, n - 1])
    idx = method.draw_negatives(index)
    assert idx.shape == (4, k + 1) and torch.equal(idx[:, 0], index)
    for row, a in zip(idx, index):
        assert len(set(row[1:].tolist())) == k and (labels[row[1:]] != labels[a]).all()
    terms = method(Outputs([torch.randn(4, 16)], torch.randn(4, 1000)), Outputs([torch.randn(4, 32)], None),
                   {"label": labels[index], "index": index}, 1)
    assert torch.isfinite(sum(terms.values()))


# ---------------------------------------------------------------------------- phase-2 totals with standard weights
def _ctx(pair, s_arch="wrn_16_2", t_arch="wrn_40_2"):
    feat_s, feat_t = pair["common"]["feat_s"], pair["common"]["feat_t"]
    shapes = lambda fs: [tuple(f.shape) if f is not None else None for f in fs]  # noqa: E731
    return Context(shapes(feat_s), shapes(feat_t), shapes(feat_s), shapes(feat_t), s_arch, t_arch, 100,
                   n_data=500, train_labels=MAIN["methods"]["crd"]["dataset_labels"])


@pytest.mark.parametrize("name", ["kd", "attention", "similarity", "rkd", "pkt", "nst", "vid", "correlation",
                                  "hint", "abound", "fsp"])
def test_phase2_totals_with_standard_weights(name):
    rec = MAIN["methods"][name]
    method = losses.build(name, _ctx(MAIN), losses.resolve_weights(name)).double().train()
    assert [method.w.ce, method.w.kd, method.w.distill] == list(rec["total_readme"]["weights_gamma_alpha_beta"])
    if name == "hint":
        method.regressor.load_state_dict(rec["module_state"]["regressor"])
    elif name == "vid":
        method.vid.load_state_dict(rec["module_state"]["vid"])
    elif name == "correlation":
        method.embed_s.load_state_dict(rec["module_state"]["embed_s"])
        method.embed_t.load_state_dict(rec["module_state"]["embed_t"])
    c = MAIN["common"]
    s = Outputs(consts(f for f in c["feat_s"]), c["logit_s"].double())
    t = Outputs(consts(f for f in c["feat_t"]), c["logit_t"].double())
    terms = method(s, t, {"label": c["target"], "index": c["index"]}, 1)
    assert_loss(sum(terms.values()), rec["total_readme"]["total"], 1e-5)


def test_crd_totals_with_standard_weights():
    rec = MAIN["methods"]["crd"]
    c = MAIN["common"]
    ctx = _ctx(MAIN)
    for name, weights, total in (("crd", losses.resolve_weights("crd"), rec["total_readme"]),
                                 ("crd+kd", losses.resolve_weights("crd", kd=1.0), rec["total_readme_crd_kd"])):
        method = losses.build("crd", ctx, weights, {"nce_k": 64})
        sd = {k: v for k, v in rec["module_state"]["crd"].items()}
        method.load_state_dict({**sd, "labels": method.labels, "_extra_state": method.get_extra_state()})
        method.double()
        step = rec["steps"][0]
        s = Outputs([None] * 4 + [step["feat_s"].double()], c["logit_s"].double())
        t = Outputs([None] * 4 + [step["feat_t"].double()], c["logit_t"].double())
        # feed the recorded negatives through the real forward
        method.draw_negatives = lambda index: step["contrast_idx"]
        terms = method(s, t, {"label": c["target"], "index": step["index"]}, 1)
        assert [weights.ce, weights.kd, weights.distill] == list(total["weights_gamma_alpha_beta"]), name
        assert_loss(sum(terms.values()), total["total"], 1e-5)


# ---------------------------------------------------------------------------- SSKD
SSKD = REF["sskd"]


def _sskd_step(case, hp, heads):
    head_s = load_module(projection_head(128), heads[0])
    head_t = load_module(projection_head(128), heads[1], train=False)
    bb_s = leaf(case["bb_feat_s"])
    logit_s = leaf(case["logit_s"])
    rep_s = head_s(bb_s)
    rep_s.retain_grad()
    with torch.no_grad():
        rep_t = head_t(case["bb_feat_t"].double())
    terms, extra = sskd_terms(logit_s, rep_s, case["logit_t"].double(), rep_t, case["target"], hp)
    total = (hp["ce_weight"] * terms["ce"] + hp["kd_weight"] * terms["kd"] + hp["tf_weight"] * terms["tf"]
             + hp["ss_weight"] * terms["ss"])
    total.backward()
    return terms, extra, total, logit_s, rep_s, bb_s, head_s


@pytest.mark.parametrize("which", ["networks", "synthetic"])
def test_sskd_step_stable_sort(which):
    if which == "networks":
        case = {"bb_feat_s": SSKD["student"]["bb_feat"], "logit_s": SSKD["student"]["logits"],
                "bb_feat_t": SSKD["teacher"]["bb_feat"], "logit_t": SSKD["teacher"]["logits"],
                "target": SSKD["data"]["labels"]}
        hp, want = SSKD["hparams"], SSKD["step_stable_argsort"]
    else:
        syn = SSKD["synthetic"]
        case = {"bb_feat_s": syn["bb_feat_s"], "logit_s": syn["logit_s"], "bb_feat_t": syn["bb_feat_t"],
                "logit_t": syn["logit_t"], "target": syn["target"]}
        hp, want = syn["hparams"], syn["step_stable_argsort"]
    heads = (SSKD["student"]["proj_head_state"], SSKD["teacher"]["proj_head_state"])
    terms, extra, total, logit_s, rep_s, bb_s, head_s = _sskd_step(case, hp, heads)
    assert extra["tf"].nonzero().flatten().tolist() == want["distill_index_tf"].tolist()
    assert extra["ss"].nonzero().flatten().tolist() == want["distill_index_ss"].tolist()
    for k in ("ce", "kd", "tf", "ss"):
        assert_loss(terms[k], want[f"loss_{k}"], 1e-6)
    assert_loss(total, want["loss_total"], 1e-6)
    torch.testing.assert_close(extra["s_simi"].float(), want["s_simi"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extra["t_simi"].float(), want["t_simi"], rtol=1e-5, atol=1e-6)
    assert_grad(logit_s.grad, want["grad_logit_s"])
    assert_grad(rep_s.grad, want["grad_rep_s"])
    assert_grad(bb_s.grad, want["grad_bbfeat_s"])
    assert_param_grads(head_s, want["grad_proj_head_s"])


def test_sskd_default_sort_differs_only_in_tie_order():
    """The reference's unstable argsort keeps another row at the cut-off; the rest agrees."""
    a, b = SSKD["step"], SSKD["step_stable_argsort"]
    assert a["distill_index_tf"].tolist() == b["distill_index_tf"].tolist()
    assert len(a["distill_index_ss"]) == len(b["distill_index_ss"])
    assert len(set(a["distill_index_ss"].tolist()) ^ set(b["distill_index_ss"].tolist())) == 2


def test_sskd_teacher_head_step():
    rec = SSKD["teacher_ss_step"]
    head = load_module(projection_head(128), SSKD["teacher"]["proj_head_state"])
    loss, simi, target = head_pretrain_loss(head(SSKD["teacher"]["bb_feat"].double()))
    assert_loss(loss, rec["loss"])
    torch.testing.assert_close(simi.float(), rec["simi"], rtol=1e-5, atol=1e-6)
    assert target.tolist() == rec["target"].tolist()
    loss.backward()
    assert_param_grads(head, rec["grad_proj_head_t"])
