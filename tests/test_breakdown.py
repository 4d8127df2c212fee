"""Breakdowns per attack / codec / codec quality (metrics.breakdown) against the ASVspoof 5 package's cells."""
from __future__ import annotations

import numpy as np
import pytest

from common.errors import InputError
from data.asvspoof import CMEntry
from metrics.breakdown import Conditions, cm_breakdown, format_breakdown, natural_key, sasv_breakdown, subsets
from metrics.countermeasure import evaluate_cm
from metrics.report import evaluate_trials
from tests.conftest import reference_metric_trials

CODECS = ("-", "C01", "C02", "C03")


@pytest.fixture(scope="module")
def ref() -> dict:
    """The reference trials with made-up conditions: row i has codec CODECS[i % 4], codec quality 1 + (i // 16) % 3
    (`-` when uncoded) and, for a spoof, attack A11 + (i // 4) % 6, so that every codec holds every attack."""
    scores, keys, _ = reference_metric_trials()
    n = len(scores)
    column = lambda name: np.array([float(r[name]) for r in scores])  # noqa: E731
    codec = [CODECS[i % 4] for i in range(n)]
    return {"cm": column("cm-score"), "asv": column("asv-score"), "sasv": column("sasv-score"),
            "cm_keys": [r["cm-label"] for r in keys], "keys": [r["asv-label"] for r in keys],
            "conditions": Conditions(
                attack=[f"A{11 + (i // 4) % 6:02d}" if r["cm-label"] == "spoof" else "bonafide"
                        for i, r in enumerate(keys)],
                codec=codec, codec_q=["-" if c == "-" else str(1 + (i // 16) % 3) for i, c in enumerate(codec)])}


# The ASVspoof 5 package's values of four cells of its full tables (attack row x codec column, `pooled` for all).
# Made with asvspoof-challenge/asvspoof5 at commit fe23d3053a0889b305d98c9e4cadf418c213d972 (evaluation-package/, run
# outside this repository; numpy 2.4, a stub `pandas` module): the subsets calculate_metrics_full.py selects (bona
# fide trials of the codec column plus the spoofs of the attack row in it, its pandas queries written as numpy masks
# over the conditions of the `ref` fixture) given to its per-cell functions:
#   Track 1: calculate_minDCF_EER_CLLR_actDCF(cm, cm_keys, "", printout=False) -> minDCF, EER (fraction), Cllr, actDCF
#   Track 2: calculate_aDCF_tdcf_tEER(cm, asv, sasv, cm_keys, asv_keys, "", printout=False, asv_scores_org=asv,
#            asv_keys_org=asv_keys) -> a-DCF, min t-DCF, t-EER (%), as evaluation_full.py computes them when its
#            --asv_org file is the system's own ASV scores
PACKAGE_CELLS = {
    ("A13", "pooled"): ((0.03972222222222221, 0.017888888888888888, 0.14318477180687603, 0.040777777777777774),
                        (0.17388515406162464, 0.07491165408447657, 1.812)),
    ("pooled", "C02"): ((0.05133333333333332, 0.02422222222222222, 0.14683628988323438, 0.05377777777777778),
                        (0.1762689075630252, 0.09527667109340417, 2.2399999999999998)),
    ("A14", "C01"): ((0.040444444444444436, 0.01577777777777778, 0.13549864801247258, 0.048888888888888885),
                     (0.16331652661064427, 0.0626689671462756, 1.3952)),
    ("A16", "-"): ((0.020666666666666656, 0.008444444444444445, 0.13359756407889128, 0.03666666666666667),
                   (0.15498039215686277, 0.04962676499685224, 0.608)),
}


def _cell(breakdown: dict, attack: str, codec: str) -> dict:
    if attack == "pooled":
        return breakdown["pooled"] if codec == "pooled" else breakdown["codec"][codec]
    return breakdown["attack"][attack] if codec == "pooled" else breakdown["attack_by_codec"][attack][codec]


@pytest.mark.parametrize("attack, codec", list(PACKAGE_CELLS))
def test_cells_are_the_packages(ref, attack, codec):
    track1, track2 = PACKAGE_CELLS[attack, codec]
    cm = _cell(cm_breakdown(ref["cm_keys"], ref["cm"], ref["conditions"]), attack, codec)
    for name, value in zip(("min_dcf", "eer", "cllr", "act_dcf"), track1, strict=True):
        assert cm[name] == pytest.approx(value * (100 if name == "eer" else 1), rel=1e-9), name
    sasv = _cell(sasv_breakdown(ref["keys"], ref["sasv"], ref["conditions"], ref["asv"], ref["cm"]), attack, codec)
    for name, value in zip(("min_a_dcf_asvspoof5", "min_t_dcf_asvspoof5", "t_eer"), track2, strict=True):
        assert sasv[name] == pytest.approx(value, rel=1e-9), name


def test_every_cell_is_its_subset_evaluated(ref):
    """Each cell is the pooled evaluation of exactly its trials: per attack all bona fide and that attack's spoofs,
    per codec / quality all trials of that condition, per matrix cell both at once."""
    cond = ref["conditions"]
    keys, scores = np.array(ref["cm_keys"]), ref["cm"]
    attack, codec, quality = (np.array(x) for x in (cond.attack, cond.codec, cond.codec_q))
    got = cm_breakdown(keys, scores, cond)
    assert list(got) == ["pooled", "attack", "codec", "codec_q", "attack_by_codec"]
    assert list(got["attack"]) == [f"A{i}" for i in range(11, 17)]
    assert list(got["codec"]) == list(CODECS) and list(got["codec_q"]) == ["-", "1", "2", "3"]

    def expected(mask):
        bona, spoof = scores[mask & (keys == "bonafide")], scores[mask & (keys == "spoof")]
        return {"bonafide": bona.size, "spoof": spoof.size, **evaluate_cm(bona, spoof)}

    assert got["pooled"] == expected(np.ones(keys.size, bool))
    for a, cell in got["attack"].items():
        assert cell == expected((keys == "bonafide") | (attack == a))
    for c, cell in got["codec"].items():
        assert cell == expected(codec == c)
    for q, cell in got["codec_q"].items():
        assert cell == expected(quality == q)
    for a, row in got["attack_by_codec"].items():
        for c, cell in row.items():
            assert cell == expected((codec == c) & ((keys == "bonafide") | (attack == a)))
    sasv = sasv_breakdown(ref["keys"], ref["sasv"], cond)            # SASV scores only: no t-EER / t-DCF
    c03 = codec == "C03"
    assert sasv["codec"]["C03"] == {"target": 75, "nontarget": 375, "spoof": 750,
                                    **evaluate_trials(np.array(ref["keys"])[c03], ref["sasv"][c03],
                                                      only=("sasv_eer", "sv_eer", "spf_eer", "min_a_dcf_asvspoof5"))}


def test_breakdowns_only_where_labels_say_something():
    keys = np.array(["bonafide", "spoof", "spoof", "bonafide"])
    is_spoof = keys == "spoof"
    assert subsets(is_spoof, Conditions()) == {}
    assert subsets(is_spoof, Conditions(attack=["-"] * 4, codec=["-"] * 4, codec_q=["-"] * 4)) == {}
    made = subsets(is_spoof, Conditions(attack=["-", "A01", "A02", "-"], codec=["-"] * 4, codec_q=["-", "-", "0", "0"]))
    assert list(made) == ["attack", "codec_q"]            # all uncoded: no codec table, so no attack x codec either
    assert made["attack"]["A01"].tolist() == [True, True, False, True]
    # a bona fide trial's attack label is ignored: 2019 LA writes '-', the ASVspoof 5 protocols 'bonafide'
    assert list(subsets(is_spoof, Conditions(attack=["bonafide", "A01", "A01", "zzz"]))["attack"]) == ["A01"]


def test_a_cell_without_both_classes_has_counts_only():
    entries = [CMEntry("S1", "U1", "-", "bonafide", codec="C01"), CMEntry("S1", "U2", "A01", "spoof", codec="C01"),
               CMEntry("S1", "U3", "A01", "spoof", codec="C02"), CMEntry("S1", "U4", "-", "bonafide", codec="-"),
               CMEntry("S1", "U5", "A02", "spoof", codec="-")]
    scores = np.array([2.0, 1.0, 0.5, 3.0, -1.0])
    got = cm_breakdown([e.key for e in entries], scores, Conditions.of_entries(entries))
    assert got["codec"]["C02"] == {"bonafide": 0, "spoof": 1}
    assert got["attack_by_codec"]["A02"]["C01"] == {"bonafide": 1, "spoof": 0}
    assert got["attack"]["A02"]["eer"] == 0.0
    table = format_breakdown(got, "cm")
    c02 = next(line for line in table.splitlines() if line.startswith("C02"))
    assert c02.split() == ["C02", "0", "1", "-", "-", "-", "-"]


def test_printed_tables(ref):
    text = format_breakdown(cm_breakdown(ref["cm_keys"], ref["cm"], ref["conditions"]), "cm")
    blocks = text.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "per attack (its spoofs against all bona fide trials):",
        "per codec condition (bona fide and spoof trials of that condition):",
        "per codec quality, pooled over codecs:",
        "minDCF per attack (rows) and codec condition (columns):",
        "EER(%) per attack (rows) and codec condition (columns):"]
    attack_rows = blocks[0].splitlines()
    assert attack_rows[1].split() == ["attack", "bonafide", "spoof", "minDCF", "EER(%)", "Cllr(bits)", "actDCF"]
    assert attack_rows[3].split()[:4] == ["pooled", "1800", "3000", "0.05167"]
    assert attack_rows[6].split()[:4] == ["A13", "1800", "500", "0.03972"]       # the package's 0.0397222...
    matrix = blocks[3].splitlines()
    assert matrix[1].split() == ["attack", "pooled", "-", "C01", "C02", "C03"]
    assert matrix[3].split() == ["pooled", "0.05167", "0.03933", "0.04844", "0.05133", "0.05667"]
    assert matrix[7].split()[0] == "A14" and matrix[7].split()[3] == "0.04044"   # the package's A14 x C01
    sasv = format_breakdown(sasv_breakdown(ref["keys"], ref["sasv"], ref["conditions"], ref["asv"], ref["cm"]), "sasv")
    header = sasv.splitlines()[1].split()
    assert header == ["attack", "target", "nontarget", "spoof", "SASV-EER(%)", "SV-EER(%)", "SPF-EER(%)", "a-DCF(AS5)",
                      "t-EER(%)", "t-DCF(AS5)"]
    assert "a-DCF(AS5) per attack (rows) and codec condition (columns):" in sasv
    with pytest.raises(InputError, match="unknown track 't1'"):
        format_breakdown({}, "t1")


def test_labels_sort_naturally_and_lengths_are_checked():
    assert sorted(["C11", "C02", "-", "A10", "A9", "C01"], key=natural_key) == ["-", "A9", "A10", "C01", "C02", "C11"]
    with pytest.raises(InputError, match="3 codec labels for 2 trials"):
        cm_breakdown(["bonafide", "spoof"], np.array([1.0, 0.0]), Conditions(codec=["-", "C01", "C02"]))
    with pytest.raises(InputError, match="2 scores but 3 keys"):
        cm_breakdown(["bonafide", "spoof", "spoof"], np.array([1.0, 0.0]), Conditions())
