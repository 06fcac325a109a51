"""How a driver finds the cluster it joins (init's `address`), and the pipe of a cluster that
init() started itself.

Ray's forms, and where shoal reads them:
- address=None: SHOAL_ADDRESS (inside `shoal run`, `shoal launch`, after `eval $(shoal up)`),
  else SHOAL_CLUSTER_FILE, else init() starts a one-node cluster of its own;
- address="auto": SHOAL_ADDRESS, else SHOAL_CLUSTER_FILE, else the running cluster of this
  user on this machine (`shoal address --json`: the newest, or the only one);
- address="local": always a new cluster;
- address="host:port", "tcp:host:port", "unix:/path": that agent; the secret comes from the
  record of this user's running cluster with that address on this machine (which is then
  reached through its Unix socket), else SHOAL_SECRET, else SHOAL_CLUSTER_FILE;
- address=a file (`shoal address --tcp --json > FILE`): the address and secret in it.
"""
import json
import os
import subprocess
import sys
import threading
import warnings

_warned_detached = False


def _norm(address):
    """A user's address in the wire's form: host:port -> tcp:host:port."""
    if address.startswith(("unix:", "tcp:")):
        return address
    if address.startswith("/"):
        return "unix:" + address
    host, sep, port = address.rpartition(":")
    if sep and host and port.isdigit():
        return "tcp:" + address
    raise ValueError(f"shoal.init(address={address!r}): want host:port, tcp:host:port, unix:/path, 'auto', 'local', "
                     "or a cluster file written by `shoal address --tcp --json`")


def read_cluster_file(path):
    """(address, secret) from a record written by `shoal address --json`."""
    try:
        with open(os.path.expanduser(path)) as f:
            rec = json.load(f)
        return _norm(rec["address"]), rec["secret"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConnectionError(f"cannot read the cluster file {path}: {e}; write it on the cluster's head node with "
                              "`shoal address --tcp --json > FILE` and copy it here (keep it private: it holds the secret)") from e


def running_clusters(binary, every=False):
    """The record of this user's running cluster on this machine (`shoal address`: the only
    one, or the one SHOAL_CLUSTER names; every=True: all of them), as a list, and why there is
    none ("" when there are)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SHOAL_ADDRESS", "SHOAL_SECRET", "SHOAL_CLUSTER_ID")}
    try:
        out = subprocess.run([binary, "address", "--all" if every else "--json"], env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], str(e)
    if out.returncode != 0:
        return [], out.stderr.strip().removeprefix("shoal: ")
    recs = []
    for line in out.stdout.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass
    return recs, ""


def _records(binary, every):
    try:
        b = binary()
    except RuntimeError as e:  # no shoal binary here: no local cluster to find
        return [], str(e)
    return running_clusters(b, every)


def resolve(address, binary):
    """(address, secret) to connect to, or (None, None) to start a cluster. binary() names the
    shoal binary (called only when a running cluster must be looked up)."""
    env_addr = os.environ.get("SHOAL_ADDRESS")
    env_secret = os.environ.get("SHOAL_SECRET", "")
    cfile = os.environ.get("SHOAL_CLUSTER_FILE")
    if address == "local":
        return None, None
    if address is None or address == "auto":
        if env_addr:
            return env_addr, _need_secret(env_addr, env_secret)
        if cfile:
            return read_cluster_file(cfile)
        if address is None:
            return None, None
        recs, why = _records(binary, False)
        if not recs:
            raise ConnectionError(f"init(address='auto') found no running shoal cluster to join ({why}): SHOAL_ADDRESS and "
                                  "SHOAL_CLUSTER_FILE are not set; start one with `shoal up`, name one with SHOAL_CLUSTER, "
                                  "or call init() without an address to start one for this driver")
        return recs[0]["address"], recs[0]["secret"]
    if os.path.isfile(os.path.expanduser(address)):
        return read_cluster_file(address)
    addr = _norm(address)
    for rec in _records(binary, True)[0]:
        if addr in (rec.get("address"), rec.get("tcp")):
            # on this machine: its Unix socket, so that objects go through shared memory
            return rec["address"], rec["secret"]
    if env_secret:
        return addr, env_secret
    if cfile:
        faddr, fsecret = read_cluster_file(cfile)
        return addr, fsecret
    return addr, _need_secret(addr, "")


def _need_secret(addr, secret):
    if not secret:
        raise ConnectionError(f"cannot connect to {addr}: SHOAL_SECRET is not set and no running cluster of this user "
                              "on this machine has that address; set SHOAL_SECRET (the session directory's `secret` file), "
                              "or SHOAL_CLUSTER_FILE to a file written by `shoal address --tcp --json`")
    return secret


def drain(stream):
    """Copy what the cluster process init() started writes on its stdout after its first line
    (workers' lines that no driver reads, e.g. with observability off) to this process's
    stdout, so that a full pipe never blocks the cluster. Returns the thread."""
    def run():
        try:
            for line in iter(stream.readline, b""):
                try:
                    out = sys.stdout
                    if out is not None:
                        out.write(line.decode("utf-8", "replace"))
                        out.flush()
                except Exception:  # noqa: BLE001 - a closed or odd stdout must not stop the draining
                    pass
        except (OSError, ValueError):
            pass
    t = threading.Thread(target=run, name="shoal-cluster-stdout", daemon=True)
    t.start()
    return t


def detached_actor(private_cluster):
    """Called when a driver creates a lifetime="detached" actor. A cluster that init() started
    ends with the driver that started it, detached actors included, as Ray's does
    (docs/remote-drivers.md, "Clusters that init() starts"): said once, so that nobody expects
    the actor to outlive this process."""
    global _warned_detached
    if private_cluster and not _warned_detached:
        _warned_detached = True
        warnings.warn("a detached actor lives as long as its cluster, and the cluster shoal.init() started ends when this "
                      "driver exits; for actors that outlive their driver, start the cluster with `shoal up` (or run in "
                      "`shoal launch`) and init(address='auto')", RuntimeWarning, stacklevel=3)
