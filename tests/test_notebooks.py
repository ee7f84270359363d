"""The notebooks run top to bottom in their small setting (``ALKIT_NOTEBOOK_SMALL=1``), as CI runs them.

Each notebook is executed with nbclient in a kernel running *this* Python (a kernel spec written to a temporary
folder on ``JUPYTER_PATH``, so a fresh virtual environment needs no ``ipykernel install``), with ``notebooks/`` as
the working directory. A cell that raises fails the test with the cell's traceback. The committed copies must
carry the outputs of a full (not small) run, so a reader sees real plots and numbers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel", reason="executing notebooks needs ipykernel (pip install -e .[test])")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SHARED_HYMENOPTERA = REPO.parent / "shared" / "data" / "hymenoptera_data"
KERNEL_NAME = "alkit-tests-python"

NOTEBOOK_NAMES = ["01_loops.ipynb", "02_kfold.ipynb", "03_active_learning_hymenoptera.ipynb"]
NEEDS_SHARED_DATA = {"03_active_learning_hymenoptera.ipynb"}


@pytest.fixture(scope="module")
def notebook_environment(tmp_path_factory):
    """A kernel spec for ``sys.executable`` on ``JUPYTER_PATH``, the small setting, headless matplotlib, 1 thread."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "alkit tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    updates = {
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(jupyter_dir), os.environ.get("JUPYTER_PATH")])),
        "ALKIT_NOTEBOOK_SMALL": "1",
        "MPLBACKEND": "Agg",
        # One thread: on a busy 2-core runner two spinning OpenMP threads per process made the small run 10x slower.
        "OMP_NUM_THREADS": "1",
        # The notebooks write checkpoints to tempfile.mkdtemp() folders: keep them under pytest's tmp, cleaned up.
        "TMPDIR": str(tmp_path_factory.mktemp("notebook_tmp")),
    }
    saved = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _skip_without_data(name: str) -> None:
    if name in NEEDS_SHARED_DATA and not SHARED_HYMENOPTERA.is_dir():
        pytest.skip(f"{name} needs the hymenoptera images at {SHARED_HYMENOPTERA}")


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_in_small_mode(name, notebook_environment):
    _skip_without_data(name)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError (with the cell and its traceback) when a cell fails
    settings = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if cell.cell_type == "code"
    )
    assert "small=True" in settings, "the notebook did not pick up ALKIT_NOTEBOOK_SMALL=1"


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_committed_notebook_holds_the_outputs_of_a_full_run(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{name} has no code"
    unexecuted = [i for i, cell in enumerate(code_cells) if cell.execution_count is None]
    assert not unexecuted, f"{name}: code cells {unexecuted} were not executed before committing"
    outputs = [output for cell in code_cells for output in cell.get("outputs", [])]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, f"{name} was committed with an error output: {errors[0].get('ename')}"
    assert any("image/png" in output.get("data", {}) for output in outputs), f"{name} shows no plot"
    text = "\n".join(output.get("text", "") for output in outputs)
    assert "small=False" in text, f"{name} was committed with the outputs of a small (CI) run"
