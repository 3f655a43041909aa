from tally.loadtest.chart import moving_mean
from tally.loadtest.flamesummary import summarize

FRAME = (
    '<g><title>{name} ({w} samples, 1%)</title><rect x="0%" y="{y}" width="1%" height="15"'
    ' fill="red" fg:x="{x}" fg:w="{w}"/></g>'
)


def svg(frames):
    return "<svg>" + "\n".join(FRAME.format(**f) for f in frames) + "</svg>"


def test_self_and_total_samples_per_function(tmp_path):
    # all(100) -> main(100) -> fold(60) -> decode(20); main -> insert(30); recursion: f -> f
    frames = [
        {"name": "all", "y": 100, "x": 0, "w": 100},
        {"name": "main (m.py:1)", "y": 84, "x": 0, "w": 100},
        {"name": "fold (f.py:2)", "y": 68, "x": 0, "w": 60},
        {"name": "decode (w.py:3)", "y": 52, "x": 0, "w": 20},
        {"name": "insert (s.py:4)", "y": 68, "x": 60, "w": 30},
        {"name": "rec (r.py:5)", "y": 52, "x": 60, "w": 10},
        {"name": "rec (r.py:5)", "y": 36, "x": 60, "w": 10},
    ]
    path = tmp_path / "flame.svg"
    path.write_text(svg(frames))
    hot = {f.function: (f.self_pct, f.total_pct) for f in summarize(path, top=10)}
    assert hot["fold (f.py:2)"] == (40.0, 60.0)
    assert hot["decode (w.py:3)"] == (20.0, 20.0)
    assert hot["insert (s.py:4)"] == (20.0, 30.0)
    assert hot["main (m.py:1)"] == (10.0, 100.0)
    assert hot["rec (r.py:5)"] == (10.0, 10.0)  # recursion counted once in the total


def test_moving_mean_skips_missing_values():
    assert moving_mean([None, 2, 4, None, 6], 3) == [2, 3, 3, 5, 6]
