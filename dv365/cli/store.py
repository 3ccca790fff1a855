"""``dv365 store``: list, promote, roll back, collect, pin, verify and re-publish the versions
of a store (any registered URI scheme; URIs are always printed with the password masked)."""

from __future__ import annotations

import warnings
from typing import Optional

import typer

from dv365.console import progress, stderr, stdout
from dv365.durations import moment_text

_URI = typer.Argument(..., help="Store URI: lmdb://PATH, redis://HOST:PORT/DB, ...")
_VERSION = typer.Argument(..., help="A version id (see `dv365 store versions`).")

store_app = typer.Typer(
    name="store", no_args_is_help=True,
    help="Versions of a store: list, promote, rollback, gc, pin, verify, publish elsewhere.")


def _open(uri: str, where: str = "URI"):
    from dv365.stores import open_store

    return open_store(uri, where=where)


def _say(text: str) -> None:
    stdout.print(text, highlight=False, markup=False, soft_wrap=True)


@store_app.command("versions")
def versions(uri: str = _URI) -> None:
    """The published versions, oldest first, marked current / pinned; then staged ones."""
    with _open(uri) as store:
        infos = store.versions()
        staged = store.staged()
        rows = [("id", "", "at", "created", "codec", "shape", "users", "bytes")]
        for info in infos:
            m = info.manifest
            marks = ",".join(k for k, on in (("current", info.current),
                                             ("pinned", info.pinned)) if on)
            rows.append((m.id, marks, moment_text(m.at_ms), moment_text(m.created_ms),
                         m.codec, f"{m.rows}x{m.dim}", f"{m.users:,}", f"{m.bytes:,}"))
        for m in staged:
            rows.append((m.id, "staged", moment_text(m.at_ms), moment_text(m.created_ms),
                         m.codec, f"{m.rows}x{m.dim}", "-", "-"))
        _say(f"versions of {store.display_uri}")
        if len(rows) == 1:
            _say("no versions yet")
            return
        widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
        for row in rows:  # plain columns: readable in a pipe and in a terminal alike
            cells = [cell.rjust(w) if k >= 6 else cell.ljust(w)
                     for k, (cell, w) in enumerate(zip(row, widths))]
            _say("  ".join(cells).rstrip())


def _change(uri: str, change, done: str) -> None:
    """Apply ``change(store)`` and say ``done`` (formatted with its result)."""
    with _open(uri) as store:
        result = change(store)
        _say(f"{store.display_uri}: {done.format(result)}")


@store_app.command("promote")
def promote(uri: str = _URI, version: str = _VERSION) -> None:
    """Make a published version current (one atomic pointer change)."""
    _change(uri, lambda store: store.promote(version), f"current version {version}")


@store_app.command("rollback")
def rollback(uri: str = _URI) -> None:
    """Make the version that was current before the current one current again."""
    _change(uri, lambda store: store.rollback(), "current version {}")


@store_app.command("gc")
def gc(uri: str = _URI,
       keep: int = typer.Option(..., "--keep", help="Published versions to keep (newest)."),
       grace: Optional[float] = typer.Option(
           None, "--grace", help="Seconds a version that stopped being current stays "
                                 "(default: the store's own)."),
       ) -> None:
    """Remove all but the newest K versions; never the current or a pinned one, nor one
    that stopped being current less than the grace period ago."""
    with _open(uri) as store:
        removed = store.gc(keep=keep, grace_s=grace)
        _say(f"{store.display_uri}: removed {len(removed)} version(s)"
             + (f": {', '.join(removed)}" if removed else ""))


@store_app.command("pin")
def pin(uri: str = _URI, version: str = _VERSION,
        note: str = typer.Option("", "--note", help="Why it is pinned.")) -> None:
    """Protect a version from gc."""
    _change(uri, lambda store: store.pin(version, note), f"pinned {version}")


@store_app.command("unpin")
def unpin(uri: str = _URI, version: str = _VERSION) -> None:
    """Let gc remove a version again."""
    _change(uri, lambda store: store.unpin(version), f"unpinned {version}")


@store_app.command("verify")
def verify(uri: str = _URI,
           version: Optional[str] = typer.Argument(None, help="Default: the current one.")
           ) -> None:
    """Scan a version: every record's checksum, the count and the snapshot checksum against
    its manifest (exit 1 on any mismatch)."""
    from dv365.export.records import records_checksum

    with _open(uri) as store:
        manifest = store.manifest(version)
        users = corrupt = checksum = 0
        with progress(f"verifying {manifest.id}", manifest.users) as advance:
            for ids, opened in store.scan(manifest.id):
                users += int(opened.found.sum())
                corrupt += len(opened.corrupt)
                checksum = records_checksum(ids[opened.found], opened.records[opened.found],
                                            checksum)
                advance(len(ids))
        problems = []
        if corrupt:
            problems.append(f"{corrupt:,} corrupt record(s)")
        if users != manifest.users:
            problems.append(f"{users:,} valid records where the manifest says "
                            f"{manifest.users:,}")
        if checksum != manifest.checksum:
            problems.append(f"checksum {checksum:016x} where the manifest says "
                            f"{manifest.checksum:016x}")
        if problems:
            raise store.error(f"version {manifest.id}: " + "; ".join(problems))
        _say(f"{store.display_uri}: version {manifest.id}: {users:,} records, checksum "
             f"{checksum:016x}: ok")


@store_app.command("publish")
def publish(source: str = typer.Option(..., "--from", help="Store to copy from."),
            target: str = typer.Option(..., "--to", help="Store to publish to."),
            version: Optional[str] = typer.Option(None, "--version",
                                                  help="Version to copy (default: current)."),
            ) -> None:
    """Re-publish a snapshot of one store in another: the same manifest and records, made
    current there. Interrupted, it resumes from the last complete shard."""
    from dv365.export.records import combine_checksums, records_checksum
    from dv365.export.sink import ShardDone

    with _open(source, "--from") as src, _open(target, "--to") as dst:
        manifest = src.manifest(version)
        if manifest.id in {info.manifest.id for info in dst.versions()}:
            dst.promote(manifest.id)
            _say(f"{dst.display_uri}: version {manifest.id} is there already; made current")
            return
        draft = manifest.draft()
        staged = dst.stage(draft)
        done = staged.completed_shards()
        if done:
            stderr.print(f"resuming: {len(done)} shard(s) of {manifest.id} are there already",
                         highlight=False, markup=False)
        corrupt = 0
        with progress(f"publishing {manifest.id}", manifest.users) as advance, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # shard k is the k-th batch of shard_size users, ascending: the same every run
            for index, (ids, opened) in enumerate(src.scan(manifest.id,
                                                           batch_size=manifest.shard_size)):
                advance(len(ids))
                corrupt += len(opened.corrupt)
                if index in done:
                    continue
                keep = opened.found
                ids, records = ids[keep], opened.records[keep]
                staged.write(ids, records)
                staged.finish_shard(ShardDone(index, len(ids), records.nbytes,
                                              records_checksum(ids, records), len(ids)))
        if corrupt:
            raise src.error(f"version {manifest.id} has {corrupt:,} corrupt record(s); not "
                            "published", hint=f"see `dv365 store verify {src.display_uri}`")
        shards = staged.completed_shards().values()
        checksum = combine_checksums([s.checksum for s in shards])
        if checksum != manifest.checksum:
            raise dst.error(f"version {manifest.id}: the copied records' checksum "
                            f"{checksum:016x} is not the manifest's {manifest.checksum:016x}; "
                            "not published")
        staged.publish(manifest)
        _say(f"{dst.display_uri}: published version {manifest.id} ({manifest.users:,} users) "
             f"from {src.display_uri}")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
