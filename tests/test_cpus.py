"""training/cpus.py: the CPUs a process may use, which --intra-op-threads auto shares out."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from training import cpus


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_a_process_pinned_to_one_cpu_counts_one_and_its_auto_threads_follow():
    """Under `taskset -c 0` (as a container's cpuset would) the process may run on 1 CPU whatever the machine
    has: usable_cpus() is 1 and the MLP models' auto --intra-op-threads is max(1, 1 // 2) = 1."""
    probe = ("import json; from training import cli, cpus; "
             "print(json.dumps([cpus.usable_cpus(), cli.parse_args(['gan']).intra_op_threads]))")
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [1, 1]


def cgroup_tree(tmp_path, proc_lines, files):
    """A /proc/self/cgroup of `proc_lines` and a cgroup mount holding `files` ({relative path: text})."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "proc_cgroup").write_text("\n".join(proc_lines) + "\n")
    for relative, text in files.items():
        path = tmp_path / "root" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return {"proc_cgroup": str(tmp_path / "proc_cgroup"), "cgroup_root": str(tmp_path / "root")}


@pytest.mark.parametrize("proc_lines, files, quota", [
    # v2: the job's own 2.5 CPUs under a parent's 1.5, which binds it
    (["0::/parent/job"], {"cpu.max": "max 100000", "parent/cpu.max": "150000 100000",
                          "parent/job/cpu.max": "250000 100000"}, 1.5),
    # v2 without a limit
    (["0::/job"], {"cpu.max": "max 100000", "job/cpu.max": "max 100000"}, None),
    # v2 in a container: the host's path, the container's cgroup mounted at the root
    (["0::/kubepods/pod1/abc"], {"cpu.max": "50000 100000"}, 0.5),
    # v1 (hybrid): the cpu controller's hierarchy, mounted as cpu,cpuacct
    (["4:memory:/job", "2:cpu,cpuacct:/job", "0::/job"],
     {"cpu,cpuacct/job/cpu.cfs_quota_us": "300000", "cpu,cpuacct/job/cpu.cfs_period_us": "100000",
      "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 3.0),
    # v1 without a limit
    (["1:cpu:/"], {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
])
def test_cgroup_quotas_are_read_in_cpus(tmp_path, proc_lines, files, quota):
    assert cpus.cgroup_cpu_quota(**cgroup_tree(tmp_path, proc_lines, files)) == quota


def test_a_quota_caps_the_cpus_at_its_floor_and_at_least_one(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    for cpu_max, expected in [("150000 100000", 1), ("50000 100000", 1), ("max 100000", affinity),
                              (f"{100000 * (affinity + 2)} 100000", affinity)]:
        tree = cgroup_tree(tmp_path / cpu_max.replace(" ", "_"), ["0::/"], {"cpu.max": cpu_max})
        assert cpus.usable_cpus(**tree) == expected, cpu_max
    assert cpus.usable_cpus(proc_cgroup=str(tmp_path / "missing")) == affinity  # no cgroups: the affinity
