"""Running nft scripts: libnftables in this process, or the `nft` binary.

libnftables is the default: a small transaction costs 0.2 ms in process
against 10-20 ms through `nft -f -`, which starts a process and fills its
cache on every call (measured at 10k Services, benchmarks/results/
nft_design_spike.md). Its binding is Debian's python3-nftables (not on
PyPI). `nft` is the fallback when the binding is missing, and a choice
(nftables.via) for debugging.

A large script (a full sync) goes through `nft -f -` anyway: loading costs
the same either way, but libnftables' parse takes about 1.7 KB per element
(230 MB at 10k Services of 10 endpoints), which stays in this process
after (glibc keeps it); in a child it is gone when the child exits.
"""
import subprocess

LIBNFTABLES, NFT = "libnftables", "nft"
VIAS = (LIBNFTABLES, NFT)
LARGE = 1 << 20          # bytes of script from which the binary runs it (see above)


class NftError(RuntimeError):
    pass


class Nft:
    def __init__(self, via: str = LIBNFTABLES) -> None:
        self._lib = None
        if via == LIBNFTABLES:
            try:
                import nftables
            except ImportError:          # not Debian's python3-nftables: the binary does the same
                via = NFT
            else:
                self._lib = nftables.Nftables()
        self.via = via

    def run(self, script: str) -> str:
        """Run a script as one transaction; raises NftError with nft's message."""
        if self._lib is not None and len(script) < LARGE:
            rc, out, err = self._lib.cmd(script)
        else:
            done = _nft(["-f", "-"], script)
            rc, out, err = done.returncode, done.stdout, done.stderr
        if rc:
            raise NftError(_first_error(err) or f"nft failed ({rc})")
        return out


def _nft(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["nft", *args], input=script, text=True, capture_output=True)
    except OSError as err:
        raise NftError(f"cannot run nft ({err.strerror}): install the nftables package") from None


def _first_error(err: str) -> str:
    """nft's first error line, with the line of the script it points at."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if "Error:" in line]
    if not errors:
        return " ".join(lines[:2])
    i = errors[0]
    context = lines[i + 1].strip() if i + 1 < len(lines) else ""
    return f"{lines[i].strip()} in: {context[:200]}"
