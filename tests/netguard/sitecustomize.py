"""A network guard for the end-to-end tests: put this folder on PYTHONPATH and set MMEMORY_NETGUARD_LOG, and every
Python process started with that environment (Snakemake, each job's script, torchrun and its workers) records and
refuses any DNS lookup or connection to a host other than this machine. Each process that loads the guard appends
its pid to `<log>.loaded`, so a test can tell that the guard was really there.

Only Python-level sockets are watched (huggingface_hub, requests, httpx and urllib all use them); loopback traffic
(torch.distributed's rendezvous, a local Ollama) is allowed.
"""
import os
import socket
import sys

_LOG = os.environ.get("MMEMORY_NETGUARD_LOG")

if _LOG:
    try:
        _HOST = socket.gethostname()
    except OSError:
        _HOST = ""
    _LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "::1", "0.0.0.0", "",
                    _HOST}

    def _local(host) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        host = str(host).strip("[]")
        return host in _LOCAL_NAMES or host.startswith("127.") or host.startswith("::ffff:127.")

    def _record(what, target) -> None:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"pid {os.getpid()} {what} {target!r} argv {sys.argv[:4]!r}\n")

    _getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if not _local(host):
            _record("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused")
        return _getaddrinfo(host, *args, **kwargs)

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _check(sock, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and not _local(address[0]):
            _record("connect", address)
            raise ConnectionRefusedError(f"network guard: connection to {address!r} refused")

    def connect(self, address):
        _check(self, address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return _connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    with open(f"{_LOG}.loaded", "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
