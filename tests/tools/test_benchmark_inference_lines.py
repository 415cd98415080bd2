"""benchmark/compare.py's inference table: medians over rounds, ratios against the same row of
the reference arm, oneDNN column from what the predictor actually ran."""
from conftest import load_script

compare = load_script("benchmark/compare.py", "bench_compare_under_test")


def run(ms, onednn, threads=2, batch=1):
    return {"ms_per_image_median": ms, "onednn": onednn, "threads": threads,
            "input": [batch, 3, 48, 320]}


def test_inference_lines_ratio_per_row():
    by_arm = {
        "optimised": [{"inference": {"default": run(10.0, True), "default_onednn_off": run(40.0, False)}},
                      {"inference": {"default": run(14.0, True), "default_onednn_off": run(44.0, False)}}],
        "baseline": [{"inference": {"default": run(48.0, False), "default_onednn_on": run(12.0, True)}},
                     {"inference": {"default": run(50.0, False), "default_onednn_on": run(12.5, True)}}],
    }
    lines = compare.inference_lines(by_arm)
    body = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in lines[2:]}
    # medians 12 (optimised) vs 49 (baseline) on the same row
    assert "| 12.00 | ×4.08 |" in body[("optimised", "default")]
    assert "| on |" in body[("optimised", "default")]
    assert "| off | 49.00 | – |" in body[("baseline", "default")]
    # a row only one arm has gets no ratio
    assert body[("optimised", "default_onednn_off")].endswith("| – |")
    assert compare.inference_lines({"optimised": [{"inference": {}}]}) == []
