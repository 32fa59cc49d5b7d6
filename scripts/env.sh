# Shared by scripts/demo and scripts/test: make (or reuse) a virtual environment.
# usage: make_env DIR EXTRAS
make_env() {
    local dir=$1 extras=$2
    local py=${PYTHON:-python3}
    if [ ! -x "$dir/bin/python" ]; then
        "$py" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip
    fi
    # torch/torchvision: pin to the builds that import together (see DEVELOPERS notes in README).
    "$dir/bin/python" -m pip install -q -e ".[$extras]" \
        ${TORCH_PINS:-} 2>&1 | grep -v -e '^WARNING: Location' -e 'is ignored: it is neither' || true
    test "${PIPESTATUS[0]}" = 0
}
