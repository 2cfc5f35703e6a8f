"""The code layout's contracts: one-way layers (import-linter) and no Prefect below the tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return set(out.stdout.split())


def test_training_and_the_plain_library_import_no_prefect():
    loaded = _modules_after(
        "import models.training, models.monitoring, models.predict, payer_scoring.features, "
        "payer_scoring.results, payer_scoring.validation, payer_scoring.loading"
    )
    assert "models.training" in loaded
    assert not {m for m in loaded if m == "prefect" or m.startswith("prefect.")}


def test_the_train_and_evaluate_commands_import_no_prefect(database_url):
    # The commands run for real against the (empty) test database and stop at
    # their one-line error; Prefect must not have been imported on the way.
    code = (
        "import os\n"
        f"os.environ['DATABASE_URL'] = {database_url!r}\n"
        "from entrypoints.cli import app\n"
        "for argv in (['train', '--as-of', '2020-01-01'], ['evaluate', '--as-of', '2020-01-01']):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    except Exception as exc:\n"
        "        print('raised', type(exc).__name__)\n"
    )
    loaded = _modules_after(code)
    assert "models.training" in loaded and "entrypoints.cli" in loaded
    assert not {m for m in loaded if m == "prefect" or m.startswith("prefect.")}
