#!/usr/bin/env bash
# Mutation testing of the NumPy core with mutmut: functional.py, model.py, training.py, reference.py.
# Usage: SOFTMAX_DATA_DIR=ROOT bash scripts/mutation.sh [mutmut run arguments: mutant names or patterns such as
#        'softmax_core.functional.*'; none: all mutants]
#
# The run happens in a work folder outside the repository (MUTATION_WORKDIR, default a fresh temporary folder):
# mutmut writes its mutants/ folder in the current directory and reads its settings from pyproject.toml, and the
# repository's tree and pyproject.toml are shared with others. Keep the folder to re-run only what changed.
# The machine is shared with benchmarks: one mutant at a time (--max-children 1), nice 19 (MUTATION_NICE), one BLAS thread.
# Each mutant runs only the tests that call its function (mutmut's per-function test selection), and those
# tests use small real-data subsets; the slow full-data figures of test_training.py are left out.
# Prints the score per file: killed / (killed + survived + no tests + timeouts + suspicious).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${SOFTMAX_DATA_DIR:-}" ]; then
  echo "scripts/mutation.sh: set SOFTMAX_DATA_DIR to a folder holding fashion-mnist/ and mnist/ (the tests read the real data)." >&2
  exit 2
fi
export SOFTMAX_DATA_DIR="$(cd "$SOFTMAX_DATA_DIR" && pwd)"  # the tests run from the work folder
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
work="${MUTATION_WORKDIR:-$(mktemp -d -t softmax-mutation-XXXXXX)}"
mkdir -p "$work"
echo "work folder: $work"

# A fresh copy of the code and tests; mutmut's mutants/ cache in the folder is kept (it re-tests what changed).
rm -rf "$work/softmax_core" "$work/tests" "$work/benchmarks"
cp -r "$repo/softmax_core" "$repo/tests" "$repo/benchmarks" "$work/"  # tests/conftest.py imports benchmarks/streamlit_server.py
find "$work" -path "$work/mutants" -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
cp "$repo/pyproject.toml" "$work/pyproject.toml"
cat >>"$work/pyproject.toml" <<'EOF'

[tool.mutmut]
source_paths = ["softmax_core"]
also_copy = ["benchmarks"]
only_mutate = ["softmax_core/functional.py", "softmax_core/model.py", "softmax_core/training.py", "softmax_core/reference.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
# The fast, non-browser tests of these files. Left out: the full-data, many-epoch figures of test_training.py
# (tens of seconds each; their small-subset twins are in test_mutants.py) and the subprocess tests (a
# subprocess does not run the mutant).
pytest_add_cli_args_test_selection = [
    "tests/test_functional.py",
    "tests/test_reference.py",
    "tests/test_training.py",
    "tests/test_mutants.py",
    "tests/test_model_file.py",
    "tests/test_hostile_core.py::test_bad_model_file_is_one_model_file_error",
    "tests/test_hostile_core.py::test_bad_model_file_on_disk_is_named_and_left_as_it_was",
    "tests/test_hostile_core.py::test_missing_model_file_says_it_is_missing",
    "tests/test_hostile_core.py::test_files_a_model_may_come_in_load_exactly",
    "tests/test_hostile_core.py::test_hostile_model_files_cost_little_memory",
    # These two read the source files, which in the mutated copy hold mutmut's trampolines.
    "--deselect", "tests/test_reference.py::test_the_reference_is_plain_numpy",
    "--deselect", "tests/test_training.py::test_the_core_imports_no_user_interface_and_never_prints",
    "--deselect", "tests/test_training.py::test_lesson_defaults_reproduce_the_lessons_figures",
    "--deselect", "tests/test_training.py::test_lesson_defaults_average_test_accuracy",
    "--deselect", "tests/test_training.py::test_seed_zero_gives_the_documented_first_line",
    "--deselect", "tests/test_training.py::test_documented_extras_reach_the_convex_optimum",
    "--deselect", "tests/test_training.py::test_mnist_digits_reach_ninety_percent",
    "--deselect", "tests/test_training.py::test_one_seed_gives_identical_records",
]
timeout_multiplier = 5.0
EOF

cd "$work"
nice -n "${MUTATION_NICE:-19}" mutmut run --max-children 1 "$@" || echo "mutmut run exited with status $?" >&2

# The score per file, from mutmut's own results (mutants/<file>.meta). A timeout counts as detected.
nice -n 19 python - <<'EOF'
import json
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "timeout", "survived", "no tests", "suspicious", "not checked")


def row(name: str, count: Counter) -> str:
    checked = sum(count.values()) - count["not checked"] - count["skipped"]
    score = f"{100 * (count['killed'] + count['timeout']) / checked:.1f} %" if checked else "-"
    return f"{name:28}" + "".join(f"{count[c]:>13}" for c in COLUMNS) + f"{score:>9}"


print(f"{'file':28}" + "".join(f"{c:>13}" for c in COLUMNS) + f"{'score':>9}")
total = Counter()
for meta in sorted(Path("mutants/softmax_core").glob("*.py.meta")):
    count = Counter(status_by_exit_code[code] for code in json.loads(meta.read_text())["exit_code_by_key"].values())
    total += count
    print(row("softmax_core/" + meta.name.removesuffix(".meta"), count))
print(row("all four files", total))
print("Survivors: run `mutmut results` in the work folder; `mutmut show NAME` prints one mutant's diff.")
EOF
