import re

from modgraph.runtime.progress import Progress


def test_off_a_terminal_progress_prints_only_the_lines_asked_for(capsys):
    with Progress(4, "mnist VAE", unit="batch") as bar:
        bar.update(2)
        bar.set_postfix(epoch="1/2", loss="0.50")
        bar.log(val_loss="0.40")
    err = capsys.readouterr().err
    assert re.fullmatch(r"mnist VAE: epoch 1/2 loss 0\.50 val_loss 0\.40 \(\d+ s, ETA \d+ s\)\n"
                        r"mnist VAE: 2 of 4 steps in \d+ s \(epoch 1/2, loss 0\.50\)\n", err)


def test_a_build_reports_each_tenth_once_and_the_end(capsys):
    with Progress(20, "cache", unit="shard", initial=5) as report:
        report.say("20 shard(s), 5 already built")
        seen = []
        for _ in range(15):
            report.update()
            if report.passed_tenth():
                seen.append(report.n)
                report.log(f"{100 * report.n // report.total}%", detail=f"{report.n}/{report.total} shards, ")
    assert seen == [6, 8, 10, 12, 14, 16, 18, 20]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "cache: 20 shard(s), 5 already built"
    assert re.fullmatch(r"cache: 100% \(20/20 shards, \d+ s, ETA 0 s\)", lines[-2])
    assert re.fullmatch(r"cache: 15 of 15 steps in \d+ s", lines[-1])  # the summary a phase leaves behind


def test_on_a_terminal_the_bar_leaves_one_summary_line(capsys, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    with Progress(3, "fsdd VAE", unit="batch") as bar:
        bar.update(3)
        bar.set_postfix(loss="1.25")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"fsdd VAE: 3 of 3 steps in \d+ s \(loss 1\.25\)", last)


def test_disabled_progress_prints_nothing(capsys):
    with Progress(3, "quiet", enabled=False) as bar:
        bar.update()
        bar.log(loss="1")
    assert capsys.readouterr().err == ""
