"""Find local weights for a card, and download them (licence notice first, resume, size and sha256 checks).

A download that a caller did not ask for by name (``load_model`` finding no weights) goes through
:func:`implicit_fetch`, which first asks the guard installed with :func:`bindkit.resources.download_guard`: the
command line installs one that shows the size and licence and asks on a terminal, and refuses without one
(``bindkit fetch`` or ``--download`` are the explicit ways).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..cards import Card, load_card
from ..errors import CheckpointError, WeightsNotFoundError
from ..fileio import hash_file_into
from ..progress import progress_bar
from .. import resources
from ..resources import cache_dir, download_guard, weights_search_dirs  # noqa: F401  (download_guard re-exported by bindkit.weights)
from .read import MANIFEST

_CHUNK = 1 << 20  # 1 MiB per read: the progress bar moves smoothly, memory stays flat
_TIMEOUT_S = 60


def search_dirs() -> list[Path]:
    """Where :func:`locate_weights` looks, in order: ``$BINDKIT_WEIGHTS``, the package's own weights (bindkit_toy),
    the user cache (:func:`cache_dir`), and a clone's ``weights/`` (:func:`bindkit.resources.weights_search_dirs`)."""
    return weights_search_dirs()


def implicit_fetch(card: "str | Card") -> Path:
    """:func:`fetch_weights` for a caller that found no weights (``load_model``), after the guard's consent."""
    card = _card(card)
    if resources.download_check is not None:
        resources.download_check(card)
    return fetch_weights(card)


def download_size(card: "str | Card") -> str:
    """The size of a card's weights download for people: from ``weights.size`` (bytes, checked after the
    download) or the card's ``weights.approx_size`` note (``"about 4.5 GiB ..."``), else ``"size unknown"``."""
    w = _card(card).weights
    if w.get("size"):
        return f"{int(w['size']) / 2**30:.1f} GiB"
    return str(w.get("approx_size") or "size unknown")


def _card(card: "str | Card") -> Card:
    return card if isinstance(card, Card) else load_card(card)


def _filename(card: Card) -> str | None:
    name = card.weights.get("filename")
    if not name and card.weights.get("url"):
        name = card.weights["url"].rstrip("/").rsplit("/", 1)[-1]
    return name or None


def locate_weights(card: "str | Card") -> Path | None:
    """Local weights for ``card``: a converted directory named ``card.name`` (preferred: it loads per
    modality) or the file ``card.weights["filename"]``, in the first of :func:`search_dirs` that has one."""
    card = _card(card)
    fname = _filename(card)
    for d in search_dirs():
        converted = d / card.name
        if (converted / MANIFEST).is_file():
            return converted
        if fname and (d / fname).is_file():
            return d / fname
    return None


def license_notice(card: "str | Card") -> str:
    """The licence sentence shown before a download (from ``card.weights`` ``license_note``/``license``)."""
    card = _card(card)
    w = card.weights
    note = w.get("license_note") or (f"Licence of the {card.name} weights: {w['license']}." if w.get("license")
                                     else f"The {card.name} weights state no licence; check their source.")
    return note


def missing_weights_error(card: "str | Card") -> WeightsNotFoundError:
    """The error to raise when no weights are found: where bindkit looked and the command that fetches them."""
    card = _card(card)
    fname = _filename(card)
    looked = ", ".join(str(d) for d in search_dirs())
    what = f"{fname} or a converted directory {card.name}/" if fname else f"a converted directory {card.name}/"
    if card.weights.get("url"):
        how = (f"Fetch them with `bindkit fetch {card.name}` (downloads {card.weights['url']} to "
               f"{cache_dir()}), or pass weights=PATH / set $BINDKIT_WEIGHTS to a directory holding them.")
    else:
        how = f"Card {card.name!r} has no download URL: pass weights=PATH or set $BINDKIT_WEIGHTS."
    return WeightsNotFoundError(f"no weights for {card.name!r}: looked for {what} in {looked}. {how} "
                                f"{license_notice(card)}")


def fetch_weights(
    card: "str | Card",
    dest_dir: "str | os.PathLike | None" = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download ``card.weights["url"]`` to ``dest_dir`` (default :func:`cache_dir`) and return the file's path.

    The licence notice is printed (stderr) before anything is downloaded. An interrupted download leaves
    ``<file>.part``; the next call resumes it with an HTTP Range request. When the card gives ``size`` (bytes)
    or ``sha256`` they are checked before the atomic rename to the final name; on a mismatch the partial
    file is deleted and CheckpointError raised. An existing final file is returned as is unless ``force``.
    """
    card = _card(card)
    url = card.weights.get("url")
    if not url:
        raise CheckpointError(f"card {card.name!r} has no weights URL to fetch; pass weights=PATH instead")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    final = dest / _filename(card)
    if final.is_file() and not force:
        print(f"{license_notice(card)}\nAlready downloaded: {final}", file=sys.stderr)
        return final
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the download folder {dest} ({exc.strerror or exc}); choose "
                              "another destination (bindkit fetch --out DIR)") from None
    part = final.with_name(final.name + ".part")
    if force:
        part.unlink(missing_ok=True)
    # The licence comes first so that a user can interrupt before any byte is fetched.
    print(f"{license_notice(card)}\nDownloading {url}\n  -> {final}", file=sys.stderr)

    digest = _download(url, part, card.weights.get("size"), progress)
    _verify(card, part, digest)
    os.replace(part, final)
    return final


def _download(url: str, part: Path, size: int | None, progress: bool) -> "hashlib._Hash":
    """Append the missing bytes of ``url`` to ``part``; returns the sha256 state over the whole file."""
    digest = hashlib.sha256()
    have = part.stat().st_size if part.is_file() else 0
    if size and have > int(size):  # a stale .part from another file: start again
        part.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "bindkit"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the .part is already complete
            return hash_file_into(digest, part)
        raise CheckpointError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"cannot reach {url}: {reason}; check the network and run the command "
                              "again (a partial download resumes)") from None
    with resp:
        if have and resp.status != 206:  # the server ignored the Range header: restart from zero
            have = 0
        total = resp.headers.get("Content-Length")
        total = have + int(total) if total is not None else (int(size) if size else None)
        if have:
            hash_file_into(digest, part)
        bar = progress_bar(None if progress else False, total=total, initial=have, unit="B", unit_scale=True,
                           unit_divisor=1024, desc=part.name.removesuffix(".part"))
        try:
            with open(part, "ab" if have else "wb") as fh:
                while block := resp.read(_CHUNK):
                    fh.write(block)
                    digest.update(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise CheckpointError(f"download of {url} interrupted ({exc}); run the command again to "
                                  f"resume from {part}") from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise CheckpointError(f"download of {url} stopped at {got} of {total} bytes; run the command "
                              f"again to resume from {part}")
    return digest


def _verify(card: Card, part: Path, digest: Any) -> None:
    size, sha = card.weights.get("size"), card.weights.get("sha256")
    got = part.stat().st_size
    if size and got < int(size):  # the connection ended early: keep the bytes so a rerun resumes
        raise CheckpointError(f"download of {card.name} weights stopped at {got} of {size} bytes; run the "
                              f"command again to resume from {part}")
    if size and got != int(size):
        part.unlink()
        raise CheckpointError(f"download of {card.name} weights has {got} bytes, the card says {size}; "
                              "the partial file was deleted, run the command again")
    if sha and digest.hexdigest().lower() != str(sha).lower():
        part.unlink()
        raise CheckpointError(f"sha256 of the downloaded {card.name} weights is {digest.hexdigest()}, the card "
                              f"says {sha}; the file was deleted. Run the command again, and if it recurs the "
                              "server's file changed: check the card")
