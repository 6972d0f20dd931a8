# Sets up the two OpenCL implementations lfmrt's OpenCL tests run on here, and points the ICD
# loader at both. Source it (bash):   . tools/opencl_env.sh
#
#   PoCL (Debian's pocl-opencl-icd): OpenCL C 1.2, no cl_khr_fp16, no subgroups: the backend's
#     fallback paths (local-memory reductions, vload_half).
#   Intel's CPU runtime (PyPI's intel-opencl-rt): OpenCL 3.0 with cl_khr_fp16, cl_intel_subgroups
#     and cl_intel_required_subgroup_size: the fast paths.
#
# Installs what is missing (apt-get for PoCL when run as root, pip for Intel's runtime, into
# $PYTHON, default python3), writes an ICD folder naming both drivers (build/opencl-icd, or
# $LFMRT_OPENCL_ICD_DIR) and exports OCL_ICD_VENDORS=that folder, which the ICD loader then reads
# instead of /etc/OpenCL/vendors. LD_LIBRARY_PATH is left alone: libintelocl.so finds its own
# libraries through its RUNPATH ($ORIGIN), and the wheel's lib/ also holds a libOpenCL.so.1 of
# its own, which would take the system loader's place.

_lfmrt_opencl_env() {
    local root python icd_dir intel
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    python="${PYTHON:-python3}"
    icd_dir="${LFMRT_OPENCL_ICD_DIR:-$root/build/opencl-icd}"

    if [ ! -e /etc/OpenCL/vendors/pocl.icd ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                pocl-opencl-icd ocl-icd-libopencl1 clinfo; } >/dev/null || { echo "opencl_env: installing PoCL failed" >&2; return 1; }
        else
            echo "opencl_env: PoCL is missing (apt-get install pocl-opencl-icd ocl-icd-libopencl1)" >&2
        fi
    fi

    if ! "$python" -c "import importlib.metadata as m; m.distribution('intel-opencl-rt')" 2>/dev/null; then
        "$python" -m pip install --quiet intel-opencl-rt intel-cmplr-lib-rt \
            || { echo "opencl_env: pip install intel-opencl-rt failed" >&2; return 1; }
    fi
    intel="$("$python" -c "
import importlib.metadata as m
files = [f for f in m.distribution('intel-opencl-rt').files if f.name == 'libintelocl.so']
print(files[0].locate().resolve() if files else '')")"
    if [ -z "$intel" ] || [ ! -e "$intel" ]; then
        echo "opencl_env: intel-opencl-rt is installed but has no libintelocl.so" >&2
        return 1
    fi

    mkdir -p "$icd_dir" || return 1
    rm -f "$icd_dir"/*.icd
    cp /etc/OpenCL/vendors/*.icd "$icd_dir"/ 2>/dev/null
    echo "$intel" > "$icd_dir/intel-cpu.icd"
    export OCL_ICD_VENDORS="$icd_dir"
    echo "opencl_env: OCL_ICD_VENDORS=$icd_dir ($(ls "$icd_dir" | tr '\n' ' '))"
    if command -v clinfo >/dev/null; then clinfo -l; fi
}

_lfmrt_opencl_env
