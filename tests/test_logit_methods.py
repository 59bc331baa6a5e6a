"""DKD, DIST and logit standardisation (KD+LS, DKD+LS) against the authors' own code
(tests/fixtures/logit_methods_reference.pt, written by tests/fixtures/make_logit_records.py):
loss terms and gradients equal in float64 (rtol 1e-6), over several shapes, epochs and settings."""
import pytest
import torch

import losses
from losses import Context
from losses.dist import dist_loss
from models import Outputs

REF = torch.load(__file__.rsplit("/", 1)[0] + "/fixtures/logit_methods_reference.pt", weights_only=True)
RTOL = 1e-6


def close(got, want):
    torch.testing.assert_close(got.detach().double(), want.double(), rtol=RTOL, atol=1e-12 * want.abs().max().item())


def context(pair=("resnet32x4", "resnet8x4"), classes=100):
    return Context([], [], [], [], pair[1], pair[0], classes)


def terms_and_grads(name, rec, weights, hparams, pair=("resnet32x4", "resnet8x4"), epoch=1):
    method = losses.build(name, context(pair, rec["logit_s"].shape[1]), weights, hparams)
    s = rec["logit_s"].clone().requires_grad_()
    terms = method(Outputs([], s), Outputs([], rec["logit_t"]), {"label": rec["target"]}, epoch)
    grads = {k: torch.autograd.grad(v, s, retain_graph=True)[0] for k, v in terms.items()}
    return method, terms, grads


def assert_like_authors(terms, grads, rec, term):
    """Our CE and method terms, and the method term's gradient, against the authors' loss_ce /
    loss_kd and grad_kd."""
    close(terms["ce"], rec["loss_ce"])
    close(terms[term], rec["loss_kd"])
    close(grads[term], rec["grad_kd"])


@pytest.mark.parametrize("i", range(len(REF["dkd"])))
def test_dkd_equals_mdistiller(i):
    rec = REF["dkd"][i]
    _, terms, grads = terms_and_grads("dkd", rec, None, {"dkd_beta": rec["beta"]}, epoch=rec["epoch"])
    assert set(terms) == {"ce", "dkd"}
    assert_like_authors(terms, grads, rec, "dkd")
    close(grads["ce"], rec["grad_ce"])


def test_dkd_warmup_is_a_tensor_ramp():
    rec = REF["dkd"][0]
    values = [terms_and_grads("dkd", rec, None, None, epoch=torch.tensor(e))[1]["dkd"] for e in (1, 10, 20, 40)]
    torch.testing.assert_close(values[1] / values[0], torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(values[3], values[2])


@pytest.mark.parametrize("i", range(len(REF["kd_ls"])))
def test_kd_with_logit_standardization_equals_the_authors(i):
    rec = REF["kd_ls"][i]
    method, terms, grads = terms_and_grads("kd", rec, None, {"logit_stand": True})
    assert method.w.kd == rec["weight"] and method.kd_T == rec["T"]
    assert_like_authors(terms, grads, rec, "kd")


@pytest.mark.parametrize("i", range(len(REF["dkd_ls"])))
def test_dkd_with_logit_standardization_equals_the_authors(i):
    rec = REF["dkd_ls"][i]
    _, terms, grads = terms_and_grads("dkd", rec, None, {"logit_stand": True}, epoch=rec["epoch"])
    assert_like_authors(terms, grads, rec, "dkd")


@pytest.mark.parametrize("i", range(len(REF["dist"])))
def test_dist_equals_the_authors(i):
    rec = REF["dist"][i]
    s = rec["logit_s"].clone().requires_grad_()
    loss = dist_loss(s, rec["logit_t"], rec["beta"], rec["gamma"], rec["tau"])
    close(loss, rec["loss"])
    loss.backward()
    close(s.grad, rec["grad"])


def test_dist_method_is_the_cifar_config():
    """CE weight 1, DIST weight 2, tau 4, beta = gamma = 1 (the authors' dist_cifar.yaml, kd dist_t4)."""
    rec = next(r for r in REF["dist"] if (r["beta"], r["gamma"], r["tau"]) == (1.0, 1.0, 4.0))
    rec = dict(rec, target=torch.zeros(len(rec["logit_s"]), dtype=torch.long))
    method, terms, _ = terms_and_grads("dist", rec, None, None)
    assert (method.w.ce, method.w.kd, method.w.distill) == (1.0, 0.0, 2.0)
    close(terms["dist"], 2 * rec["loss"])


@pytest.mark.parametrize("pair,beta", [(("resnet56", "resnet20"), 2.0), (("vgg13", "vgg8"), 6.0),
                                       (("wrn_40_2", "wrn_16_2"), 6.0), (("resnet32x4", "resnet8x4"), 8.0),
                                       (("resnet32x4", "ShuffleV2"), 8.0)])
def test_dkd_beta_defaults_per_pair_as_mdistiller_configs(pair, beta):
    method = losses.build("dkd", context(pair))
    assert method.hp["dkd_beta"] == beta and method.beta == beta
    assert losses.build("dkd", context(pair), None, {"dkd_beta": 3.0}).beta == 3.0


def test_dkd_with_ls_scales_alpha_and_beta():
    method = losses.build("dkd", context(("resnet56", "resnet20")), None, {"logit_stand": True})
    assert (method.alpha, method.beta, method.T) == (9.0, 18.0, 2.0)


def test_bad_dkd_warmup_is_one_error():
    with pytest.raises(losses.MethodError, match="--dkd-warmup 0"):
        losses.build("dkd", context(), None, {"dkd_warmup": 0})


def test_later_rows_run_their_methods_and_have_published_sources():
    """Each later row is a grid row with its authors' settings, and every published number of it in
    the SSKD tables' data names its source."""
    from core import published
    from grid import tables
    assert tables.ROWS["KD+LS"] == ("kd", ["--logit-stand"]) and tables.ROWS["DKD+LS"] == ("dkd", ["--logit-stand"])
    later = [r for r in tables.ROWS if r not in tables.SSKD_ROWS]
    assert sorted(later) == ["DIST", "DKD", "DKD+LS", "KD+LS", "ReviewKD"]
    spec = published.tables()
    counted = 0
    for table in spec["sskd_tables"].values():
        for col in table["columns"]:
            assert set(col["methods"]) <= set(tables.ROWS)
            for row in later:
                if row in col["methods"]:
                    assert col["sources"][row]
                    counted += 1
    assert counted == 42
