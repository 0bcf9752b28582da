# Sourced by .ci/dev: the lowest declared versions, proven. pyproject.toml's airflow and prefect extras
# claim floors (apache-airflow>=..., prefect>=...); .venv-lowest holds exactly those floors, the rest of the
# set as in the main lock wherever it is compatible (.ci/constraints-lowest.txt, made by `bash .ci/dev lock`),
# and runs the unit tests plus one end-to-end DAG and one flow on it.

LOWEST_VENV="$ROOT/.venv-lowest"
LOWEST_LOCK=.ci/constraints-lowest.txt
# One DAG and one flow end to end: the adapters' real paths (create, watch, log streaming) on the floors.
LOWEST_TESTS=(
    tests/unit
    "tests/e2e/test_airflow_rayjob.py::test_success_streams_the_ray_log_and_returns_the_outcome"
    "tests/e2e/test_prefect_rayjob.py::test_success_streams_the_ray_log_into_the_flow_run_log"
)

lowest_pins() {
    # Every requirement of the airflow and prefect extras, pinned at its ">=" floor (read from pyproject.toml,
    # so a floor cannot change without being tested). With a lock file as $1: fail unless it pins them.
    "$PYTHON" - "$@" <<'PY'
import re, sys
try:
    import tomllib
except ImportError:
    sys.exit("reading pyproject.toml needs Python >= 3.11 (tomllib): set PYTHON=python3.11")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> str:
    return re.sub(r"(\.0)+$", "", version.strip())  # 0.5 is 0.5.0


extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
pins = {}
for requirement in extras["airflow"] + extras["prefect"]:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?[^;]*?>=\s*([0-9][^,;\s]*)", requirement)
    if not found:
        sys.exit(f"pyproject.toml: {requirement!r} declares no '>=' floor; give it one (.venv-lowest tests it)")
    pins[norm(found.group(1))] = found.group(2)
if len(sys.argv) > 1:
    lines = [line for line in open(sys.argv[1]) if re.match(r"[A-Za-z0-9]", line) and "==" in line]
    locked = {norm(name): version for name, version in (line.split("==", 1) for line in lines)}
    stale = [f"{name}=={floor}" for name, floor in pins.items() if release(locked.get(name, "")) != release(floor)]
    if stale:
        sys.exit(f"{sys.argv[1]} does not pin the floors pyproject.toml declares ({', '.join(stale)}): run 'bash .ci/dev lock'")
print("\n".join(f"{name}=={floor}" for name, floor in pins.items()))
PY
}

lock_lowest() {
    # The main lock seeds the output: uv keeps the pins it finds there wherever they fit with the floors.
    local pins
    pins=$(mktemp)
    lowest_pins > "$pins"
    cp .ci/constraints.txt "$LOWEST_LOCK"
    "$VENV/bin/uv" pip compile --quiet --python-version 3.11 --custom-compile-command "bash .ci/dev lock" \
        pyproject.toml --extra airflow --extra prefect --extra test --constraint "$pins" -o "$LOWEST_LOCK"
    # The annotations name the constraints file: a stable name, not the temporary one, keeps the lock reproducible.
    sed -i "s#-c $pins#-c (the floors of pyproject.toml's airflow and prefect extras)#" "$LOWEST_LOCK"
    rm -f "$pins"
}

setup_lowest() {
    local pins stamp
    pins=$(lowest_pins "$LOWEST_LOCK") || return 1
    # Like setup: rebuilt only when the declarations or its lock changed. Its own uv, so .venv is left alone.
    stamp=$(cat pyproject.toml "$LOWEST_LOCK" | sha256sum | cut -d' ' -f1)
    if [[ -x "$LOWEST_VENV/bin/uv" && -f "$LOWEST_VENV/.setup-stamp" && "$(cat "$LOWEST_VENV/.setup-stamp")" == "$stamp" ]]; then
        return 0
    fi
    echo "Setting up $LOWEST_VENV with the lowest declared versions: $(echo $pins) ..." >&2
    [[ -x "$LOWEST_VENV/bin/python" ]] || "$PYTHON" -m venv "$LOWEST_VENV" || return 1
    "$LOWEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" || return 1
    "$LOWEST_VENV/bin/uv" pip install --python "$LOWEST_VENV/bin/python" --quiet \
        --constraint "$LOWEST_LOCK" --editable ".[airflow,prefect,test]" || return 1
    echo "$stamp" > "$LOWEST_VENV/.setup-stamp"
}

test_lowest() {
    # Returns pytest's status (1 when the venv could not be set up); prints what it ran and how long it took.
    local start=$SECONDS rc
    setup_lowest || return 1
    echo "== Lowest declared versions ($(echo $(lowest_pins))) in $LOWEST_VENV: pytest ${LOWEST_TESTS[*]}" >&2
    # On the same xdist workers as the main suite (TEST_WORKERS, default 2): the unit tests are most of it.
    local workers=()
    [[ ${TEST_WORKERS:-2} != 0 ]] && workers=(-n "${TEST_WORKERS:-2}" --dist loadfile)
    PATH="$LOWEST_VENV/bin:$PATH" "$LOWEST_VENV/bin/python" -m pytest "${workers[@]}" "${LOWEST_TESTS[@]}" && rc=0 || rc=$?
    echo "== Lowest declared versions: pytest exited $rc, $((SECONDS - start)) s including the setup" >&2
    return $rc
}
