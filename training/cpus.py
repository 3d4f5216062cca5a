"""How many CPUs this process may use: what --intra-op-threads auto shares out, and what runs and the bench
record as the machine's CPUs. No TensorFlow here (training/cli.py uses it)."""

import math
import os
import platform

PROC_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


def usable_cpus(proc_cgroup=PROC_CGROUP, cgroup_root=CGROUP_ROOT):
    """The CPUs this process may run on: those its affinity allows (taskset, a container's cpuset), fewer
    where a cgroup quota grants less CPU time than that (docker --cpus, a Kubernetes CPU limit); at least 1.

    os.cpu_count() counts the machine's CPUs, however few of them the process may use.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call outside Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(proc_cgroup, cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.floor(quota))  # 1.5 CPUs' worth of time keeps 2 threads busy only 75% of it
    return max(1, cpus)


def cgroup_cpu_quota(proc_cgroup=PROC_CGROUP, cgroup_root=CGROUP_ROOT):
    """The CPU time this process's cgroups grant it, in CPUs (quota / period): the least along the path from
    its cgroup up to the root, as a parent's quota binds its children. None where none sets one.

    cgroup v2 (one hierarchy, the line "0::path" in /proc/self/cgroup) keeps "quota period" or "max period"
    in cpu.max; v1 (a line "N:...cpu...:path") keeps cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us in the
    cpu controller's hierarchy. In a container the path may name the host's cgroup, which the container sees
    mounted at the root: directories that do not exist are skipped.
    """
    try:
        with open(proc_cgroup, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mounts, read_quota = [cgroup_root], v2_quota
        elif "cpu" in controllers.split(","):
            mounts, read_quota = [os.path.join(cgroup_root, controllers), os.path.join(cgroup_root, "cpu")], v1_quota
        else:
            continue
        for mount in dict.fromkeys(mounts):  # in order, once each
            for directory in path_to_root(mount, path):
                quota = read_quota(directory)
                if quota is not None:
                    quotas.append(quota)
    return min(quotas, default=None)


def path_to_root(mount, path):
    """The directories of cgroup `path` under `mount`, from its own up to the mount itself."""
    parts = [part for part in path.split("/") if part]
    return [os.path.join(mount, *parts[:length]) for length in range(len(parts), -1, -1)]


def v2_quota(directory):
    """cpu.max's quota / period in `directory`, or None (no file, or "max")."""
    fields = read_fields(os.path.join(directory, "cpu.max"))
    if len(fields) != 2 or fields[0] == "max":
        return None
    return quota_in_cpus(*fields)


def v1_quota(directory):
    """cpu.cfs_quota_us / cpu.cfs_period_us in `directory`, or None (no files, or a quota of -1)."""
    quota = read_fields(os.path.join(directory, "cpu.cfs_quota_us"))
    period = read_fields(os.path.join(directory, "cpu.cfs_period_us"))
    if len(quota) != 1 or len(period) != 1 or quota[0] == "-1":
        return None
    return quota_in_cpus(quota[0], period[0])


def read_fields(path):
    """The whitespace-separated fields of a small file; [] if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().split()
    except OSError:
        return []


def quota_in_cpus(quota, period):
    """quota / period (microseconds each) as a number of CPUs, or None if they are not positive numbers."""
    try:
        quota, period = int(quota), int(period)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the architecture where the system does
    not say. Recorded beside every measured time: the same command ran twice as fast on one 2-core machine
    of this project's as on another."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
