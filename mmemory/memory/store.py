"""`MemoryStore(path)`: a persistent multimodal memory of an agent, in SQLite (WAL) with a FAISS index beside it.

    store = MemoryStore("agent.mem", encoder=load_encoder("minilm", minilm_path()))
    store.add("the red circle is at the top left", session="s1", speaker="assistant")
    store.add("here is my dog", image="dog.png", caption="a brown dog", session="s1")
    for hit in store.search(query_text="where was the red circle?", k=5):
        print(hit.score, hit.components, hit.memory.text)

Layout of `path` (a directory): `memory.sqlite` (the truth: memories, their vectors, a generation counter) and
`index.faiss` + `index.faiss.json` (a cache of the vectors, rebuilt from the database when missing or out of step).
In memory, beside the index, the store keeps what scoring reads of every memory (session, turn, timestamp, speaker,
access count, saliency) as numpy arrays (`columns.ScoringColumns`, loaded from the database on the first search), so
that a search reads SQLite rows only for the hits it returns.

Each memory has a key vector, the encoded `memory_key` ("speaker: text [shares a photo: caption]"), and an image
vector when the encoder has an image tower, all in the encoder's shared space; relevance is the best cosine over them.
The key carries the speaker because questions about a conversation name people, and the caption because it is the
photo's words; a separate caption vector (a short phrase close to every short question) is not kept. Every write is one SQLite transaction, so a crash in the middle of `add`
never loses memories committed before it; the index catches up from the database when it is opened again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mmemory.io import InputError
from mmemory.memory.columns import ScoringColumns
from mmemory.memory.index import TRAINED_TYPES, IndexConfig, VectorIndex, train_size
import mmemory.memory.lexical as lexical
from mmemory.memory.scoring import (CONTEXT, CUES, DEFAULT_WEIGHTS, EPISODE_GAP_HOURS, MemoryConfig, check_weights,
                                    combine, episodes, frequency, recency, saliency)

logger = logging.getLogger(__name__)

DB_NAME = "memory.sqlite"
INDEX_NAME = "index.faiss"
SCHEMA_VERSION = 1
VECTOR_SLOTS = 8                                        # vector ids per memory: id * 8 + slot
MODALITY_SLOT = {"text": 0, "caption": 1, "image": 2}   # "text" holds the key vector; slot 1 is no longer written
RECENCY_UNITS = ("hours", "turns", "span")
# half_life=None: this, for the unit; hours: config memory.half_life (whose recency_unit is hours)
DEFAULT_HALF_LIFE = {"hours": MemoryConfig.half_life, "turns": 50.0, "span": 0.5}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    turn INTEGER NOT NULL,
    timestamp REAL NOT NULL,            -- unix seconds (UTC)
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    image TEXT,                         -- image path, or NULL
    caption TEXT,
    access_count INTEGER NOT NULL DEFAULT 0,
    last_access REAL,                   -- unix seconds of the last retrieval (NULL: never retrieved)
    saliency REAL NOT NULL,             -- 1..10
    source TEXT                         -- free-form provenance (e.g. a turn id of an evaluation file)
);
CREATE INDEX IF NOT EXISTS memories_session_time ON memories(session, timestamp);
CREATE TABLE IF NOT EXISTS vectors (
    vector_id INTEGER PRIMARY KEY,      -- memory_id * 8 + modality slot: the FAISS id names its memory
    memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
    modality TEXT NOT NULL,             -- text | caption | image
    vec BLOB NOT NULL                   -- float32, L2-normalised, `dim` values
);
CREATE INDEX IF NOT EXISTS vectors_memory ON vectors(memory_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class MemoryInputError(InputError):
    """Bad input to the memory store: the message names the item and the fix."""


def require_store(path: str | Path) -> Path:
    """The database file of an existing store at `path`, or MemoryInputError naming the path and the fix."""
    path = Path(path)
    if not path.exists():
        raise MemoryInputError(f"memory store {path} does not exist; check the path (a store is created by `add`)")
    if not path.is_dir():
        raise MemoryInputError(f"memory store path {path} is a file; give a directory (it holds {DB_NAME})")
    if not (path / DB_NAME).is_file():
        raise MemoryInputError(f"{path} is not a memory store (it has no {DB_NAME}); check the path "
                               "(a store is created by `add`)")
    return path / DB_NAME


@dataclass
class Memory:
    id: int
    session: str
    turn: int
    timestamp: str          # ISO 8601, UTC
    speaker: str
    text: str
    image: str | None
    caption: str | None
    access_count: int
    last_access: str | None
    saliency: float
    source: str | None = None


@dataclass
class Retrieved:
    """One search hit: the memory, its final score and each component (normalised over the candidates, and raw)."""

    memory: Memory
    score: float
    components: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)


def neighbour_positions(sessions: Sequence, turns: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) turn of the same session as a position among these candidates, per candidate (-1: not one)."""
    keys = list(zip(np.asarray(sessions).tolist(), np.asarray(turns).tolist()))
    position = {key: i for i, key in enumerate(keys)}
    return tuple(np.array([position.get((s, t + d), -1) for s, t in keys], dtype=np.int64) for d in (-1, 1))


@dataclass
class Scored:
    """Every candidate of one search, in candidate order: memory ids, their sessions (codes of the store's scoring
    columns) and turns, raw and normalised components, (previous, next) neighbour positions (-1: none), the final
    score and the episode number of each candidate (`scoring.episodes`; None when neither the weights nor the caller
    asked for it)."""

    ids: np.ndarray
    sessions: np.ndarray
    turns: np.ndarray
    raw: dict[str, np.ndarray]
    norm: dict[str, np.ndarray]
    neighbours: tuple[np.ndarray, np.ndarray] | None   # None when the weights have no neighbours component
    score: np.ndarray
    groups: np.ndarray | None = None

    def order(self) -> np.ndarray:
        """Candidate positions best first; ties: more relevant, then older (smaller id) first."""
        return np.lexsort((self.ids, -self.raw["relevance"], -self.score))

    def take(self, positions: np.ndarray) -> "Scored":
        """The candidates at `positions`, in that order (neighbour positions renumbered; norm is not carried)."""
        sessions, turns = self.sessions[positions], self.turns[positions]
        return Scored(self.ids[positions], sessions, turns, {c: v[positions] for c, v in self.raw.items()}, {},
                      neighbour_positions(sessions, turns), self.score[positions],
                      None if self.groups is None else self.groups[positions])

    def hit(self, i: int, memory: Memory) -> Retrieved:
        """Candidate i as a search hit, with its memory (its row, read by the caller)."""
        return Retrieved(memory, float(self.score[i]), {c: float(self.norm[c][i]) for c in self.raw},
                         {c: float(self.raw[c][i]) for c in self.raw})


def to_unix(ts: Any) -> float:
    """ISO 8601 string, datetime (naive = UTC) or unix seconds -> unix seconds."""
    if ts is None:
        return time.time()
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if not math.isfinite(ts):
            raise MemoryInputError(f"timestamp {ts!r} is not finite; give an ISO 8601 time or unix seconds")
        return float(ts)
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError as e:
            raise MemoryInputError(f"timestamp {ts!r} is not ISO 8601 (e.g. 2024-05-01T12:00:00Z)") from e
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp()
    raise MemoryInputError(f"timestamp {ts!r} has type {type(ts).__name__}; give an ISO 8601 string or unix seconds")


def to_iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def memory_key(speaker: str, text: str, caption: str | None) -> str:
    """The text a memory is found by: "speaker: text [shares a photo: caption]"."""
    key = f"{speaker}: {text}".strip() if text else f"{speaker}:"
    return f"{key} [shares a photo: {caption}]" if caption else key


def heuristic_saliency(novelty: float, has_image: bool) -> float:
    """Default saliency on the teacher's 1-10 scale: novel content and shared images are worth remembering."""
    return 1.0 + 9.0 * (0.6 * float(np.clip(novelty, 0.0, 1.0)) + 0.4 * float(has_image))


class MemoryStore:
    """Persistent memory: SQLite (WAL) holds memories and vectors; a FAISS index (flat | hnsw | ivfflat | ivfpq |
    pca_hnsw) serves search.

    encoder: anything with `encode_texts(list[str])`, `encode_images(list[path])` and `.dim`
        (`mmemory.encoders.load_encoder(kind, path)`); None to pass vectors yourself (`vector=`, `query_vector=`).
    index: an IndexConfig, a dict of its fields, or just the type name.
    half_life / recency_unit: recency decays by half every `half_life` hours ("hours"), turns ("turns") or
        fractions of the session's time span so far ("span": 0.5 = half the conversation ago).
    update_access: retrieval increments the access count and last-access time of the returned memories. Only the
        memories that rank in the top k WITHOUT the frequency component are counted, so frequency never feeds on
        its own retrievals (`accessed()`); `mark_accessed` counts what a caller confirms.
    n_candidates: FAISS candidates rescored per search when the filtered store is larger than `exhaustive_below`
        (below it, every memory that passes the filters is scored exactly).
    saliency_fn: optional rater `(text, caption, image) -> 1..10` (e.g. a teacher LLM); default: heuristic.
    save_every: write the index file after this many added vectors (and on flush/close).
    readonly: never write (no access counts, no index file); the store must exist.
    synchronous: SQLite `synchronous` pragma (FULL: a committed memory survives power loss; NORMAL: an app crash).
    create: create the store when `path` holds none (default); False (and readonly) refuse a missing store with
        MemoryInputError instead, so that a mistyped path never becomes a new empty store.
    episode_gap_hours: a longer gap between consecutive memories of a session starts a new episode (read by the
        `episode` and `diversity` weights; `scoring.episodes`).

    `rebuilds` counts the full index rebuilds this object has done (missing, damaged or out-of-step index files,
    deletions, IVF training); appends, including those of a concurrent writer, are caught up without one.
    """

    def __init__(
        self,
        path: str | Path,
        encoder: Any = None,
        dim: int | None = None,
        index: IndexConfig | dict | str | None = None,
        half_life: float | None = None,
        recency_unit: str = MemoryConfig.recency_unit,
        update_access: bool = True,
        n_candidates: int = 100,
        exhaustive_below: int = 4096,
        weights: dict[str, float] | None = None,
        saliency_fn: Callable[[str, str | None, str | None], float] | None = None,
        save_every: int = 10000,
        readonly: bool = False,
        synchronous: str = "FULL",
        create: bool = True,
        episode_gap_hours: float = EPISODE_GAP_HOURS,
    ):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise MemoryInputError(f"memory store path {self.path} is a file; give a directory (it holds {DB_NAME})")
        create = create and not readonly
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            require_store(self.path)
        if recency_unit not in RECENCY_UNITS:
            raise ValueError(f"recency_unit must be one of {', '.join(RECENCY_UNITS)}, got {recency_unit!r}")
        self.encoder, self.recency_unit = encoder, recency_unit
        self.half_life = float(DEFAULT_HALF_LIFE[recency_unit] if half_life is None else half_life)
        self.update_access, self.n_candidates, self.exhaustive_below = update_access, n_candidates, exhaustive_below
        if not (isinstance(episode_gap_hours, (int, float)) and episode_gap_hours > 0):
            raise ValueError(f"episode_gap_hours must be a number above 0, got {episode_gap_hours!r}")
        self.episode_gap_hours = float(episode_gap_hours)
        self.weights = check_weights(weights or DEFAULT_WEIGHTS)
        self.saliency_fn, self.save_every, self.readonly = saliency_fn, save_every, readonly
        self.index_cfg = index if isinstance(index, IndexConfig) else (
            IndexConfig(type=index) if isinstance(index, str) else IndexConfig.from_dict(index or {}))
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        db_file = self.path / DB_NAME
        # mode=rw: an existing store is never created again, even if the file vanishes between check and open
        self.db = sqlite3.connect(db_file if create else f"{db_file.absolute().as_uri()}?mode=rw", uri=not create,
                                  timeout=60, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=60000")
            # a search reads ~n_candidates random rows: keep hot pages in SQLite's cache (default 2 MiB) and read the
            # file through a memory map instead of a read() per page (both change no result)
            self.db.execute("PRAGMA cache_size=-65536")
            self.db.execute("PRAGMA mmap_size=1073741824")
            if create:
                with self._Tx(self.db):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('delete_generation', '0')")
                    self.db.execute("INSERT OR IGNORE INTO meta VALUES ('access_generation', '0')")
            elif self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
                raise MemoryInputError(f"{db_file} holds no memory store (no meta table); check the path")
        except sqlite3.DatabaseError as e:  # not an SQLite file at all (e.g. "file is not a database")
            self.db.close()
            raise MemoryInputError(f"{db_file} is not a memory store database ({e}); check the path, or move the "
                                   "file away and let `add` create a new store") from e
        except MemoryInputError:
            self.db.close()
            raise
        if self._meta("schema_version") != str(SCHEMA_VERSION):
            raise MemoryInputError(f"memory store {self.path} has schema version {self._meta('schema_version')}, "
                                   f"this code reads version {SCHEMA_VERSION}; use a new store path")
        self.dim = self._init_dim(dim)
        self._index: VectorIndex | None = None
        self._index_file_bad = False  # check_index() found the index file unusable: _sync rebuilds without rereading
        self._unsaved = 0
        self.rebuilds = 0             # full index rebuilds done by this object
        self.images_embedded = True   # False once a text-only encoder refused an image
        self._cues: dict[int, lexical.DocCues] = {}   # memory id -> its key's tokens and time cues (never change)
        self._columns: ScoringColumns | None = None   # what scoring reads of every memory (`_columns_sync`)

    # --- plumbing ----------------------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb):
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    @contextmanager
    def _snapshot(self):
        """One read transaction: every SELECT inside it sees the same committed state (WAL gives a snapshot), so
        counts and rows read together agree even while another connection or process commits."""
        if self.db.in_transaction:  # already inside one (a write, or an outer snapshot): it is the snapshot
            yield self.db
            return
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def _write(self):
        if self.readonly:
            raise PermissionError(f"memory store {self.path} was opened read-only")
        return self._Tx(self.db)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _init_dim(self, dim: int | None) -> int | None:
        stored = self._meta("dim")
        enc_dim = getattr(self.encoder, "dim", None) if self.encoder is not None else None
        want = dim or enc_dim
        if stored is not None:
            if want is not None and int(want) != int(stored):
                source = f"the encoder ({type(self.encoder).__name__})" if enc_dim is not None and not dim else "the dim argument"
                raise MemoryInputError(
                    f"memory store {self.path} holds {stored}-d vectors but {source} gives {want}-d; "
                    "use the encoder the store was built with, or a new store path")
            return int(stored)
        if want is not None:
            with self._Tx(self.db):
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(int(want)),))
            return int(want)
        return None

    def generation(self) -> int:
        return int(self._meta("generation"))

    def _check_vector(self, v: Any, what: str) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        if self.dim is None:
            with self._Tx(self.db):
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(v.size),))
            self.dim = int(self._meta("dim"))
        if v.size != self.dim:
            raise MemoryInputError(f"{what}: embedding has dimension {v.size}, the store {self.path} holds "
                                   f"{self.dim}-d vectors; encode with the store's encoder")
        if not np.all(np.isfinite(v)):
            raise MemoryInputError(f"{what}: embedding contains NaN or inf; check the encoder input (empty image?)")
        n = float(np.linalg.norm(v))
        if n == 0:
            raise MemoryInputError(f"{what}: embedding is all zeros; a zero vector has no direction to compare")
        return v / n

    def _need_encoder(self, what: str):
        if self.encoder is None:
            raise MemoryInputError(f"{what}: the store has no encoder; pass encoder= to MemoryStore or give vectors")
        return self.encoder

    def _encode_texts(self, texts: list[str], what: str) -> np.ndarray:
        return np.asarray(self._need_encoder(what).encode_texts(texts), dtype=np.float32).reshape(len(texts), -1)

    def _encode_images(self, paths: list[str], what: str) -> np.ndarray:
        for p in paths:
            if not Path(p).is_file():
                raise FileNotFoundError(f"{what}: image {p} does not exist; fix the path or drop the image")
        return np.asarray(self._need_encoder(what).encode_images(paths), dtype=np.float32).reshape(len(paths), -1)

    # --- index synchronisation ---------------------------------------------------------------------------------

    def _all_vectors(self, where: str = "", args: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute(f"SELECT vector_id, vec FROM vectors {where} ORDER BY vector_id", args).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim or 0)
        return ids, vecs

    def rebuild_index(self) -> None:
        """Rebuild the FAISS index from the database (the truth) and save it."""
        with self._snapshot():  # the generation and the vectors of one committed state
            gen = self.generation()
            ids, vecs = self._all_vectors()
        t0 = time.perf_counter()
        self._index = VectorIndex(self.dim, self.index_cfg)
        self._index.rebuild(ids, vecs, gen)
        self._index_file_bad = False
        self.rebuilds += 1
        logger.info("memory index rebuilt from %s: %d vectors (%s) in %.2fs", self.path / DB_NAME, len(ids),
                    self._index.kind, time.perf_counter() - t0)
        self._save_index()

    def _save_index(self) -> None:
        if not self.readonly and self._index is not None:
            self._index.save(self.path / INDEX_NAME)
            self._unsaved = 0

    def _sync(self) -> VectorIndex | None:
        """Bring the index in step with the database: load it, catch up appended vectors, or rebuild.

        Each decision reads the generation, the count and the new rows in one read transaction, so a writer that
        commits in between (another thread or process) is simply caught up next time, never mistaken for damage."""
        if self.dim is None:
            return None
        if self._index is None:
            self._index = None if self._index_file_bad else VectorIndex.load(self.path / INDEX_NAME, self.dim,
                                                                              self.index_cfg)
            if self._index is None:
                self.rebuild_index()
                return self._index
            with self._snapshot():
                gen = self.generation()
                n_db, max_id = self.db.execute("SELECT COUNT(*), COALESCE(MAX(vector_id), 0) FROM vectors").fetchone()
            if self._index.generation == gen and (n_db, max_id) != (self._index.ntotal, self._index.max_vector_id):
                logger.warning("memory index of %s claims generation %d but holds %d vectors (max id %d) while the "
                               "database holds %d (max id %d); rebuilding", self.path, self._index.generation,
                               self._index.ntotal, self._index.max_vector_id, n_db, max_id)
                self.rebuild_index()
                return self._index
        if self.generation() == self._index.generation:  # the common case: nothing committed since
            return self._index
        with self._snapshot():
            gen = self.generation()
            if gen == self._index.generation:
                return self._index
            n_db = self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            stale = int(self._meta("delete_generation")) > self._index.generation or gen < self._index.generation
            if not stale:
                ids, vecs = self._all_vectors("WHERE vector_id > ?", (self._index.max_vector_id,))
        if stale:
            logger.warning("memory index of %s is out of step (memories deleted or index from the future); rebuilding",
                           self.path)
            self.rebuild_index()
            return self._index
        if self._index.ntotal + len(ids) != n_db:
            logger.warning("memory index of %s is out of step (%d indexed + %d new != %d in the database); rebuilding",
                           self.path, self._index.ntotal, len(ids), n_db)
            self.rebuild_index()
            return self._index
        self._index.add(ids, vecs)
        self._index.generation = gen
        self._unsaved += len(ids)
        cfg = self.index_cfg
        if cfg.type in TRAINED_TYPES and self._index.kind == "flat" and n_db >= train_size(cfg):
            logger.info("memory store %s reached %d vectors: training the %s index", self.path, n_db, cfg.type)
            self.rebuild_index()
            return self._index
        if self._unsaved >= self.save_every:
            self._save_index()
        return self._index

    def _columns_sync(self) -> ScoringColumns:
        """The scoring columns (`columns.ScoringColumns`) in step with the database: loaded on first use, appended
        after commits, loaded again after deletions, access counts read again after another connection's. Call it
        inside a snapshot, so that the counters and the rows read are of one committed state."""
        counters = dict(self.db.execute("SELECT key, CAST(value AS INTEGER) FROM meta WHERE key IN "
                                        "('generation', 'delete_generation', 'access_generation')").fetchall())
        gen, access_gen = counters["generation"], counters.get("access_generation", 0)
        cols = self._columns
        if cols is None or counters["delete_generation"] > cols.generation or gen < cols.generation:
            t0 = time.perf_counter()
            cols = self._columns = ScoringColumns()
            cols.append(self.db)
            cols.access_generation = access_gen
            logger.info("memory store %s: scoring columns of %d memories loaded in %.2fs", self.path,
                        int(cols.present.sum()), time.perf_counter() - t0)
        elif gen != cols.generation:
            cols.append(self.db)
        if access_gen != cols.access_generation:
            cols.reload_access(self.db)
        cols.generation, cols.access_generation = gen, access_gen
        return cols

    def check_index(self) -> dict:
        """Compare the index with the database without changing either: {'in_step': bool, ...}.

        An index file that fails its checksum (or cannot be read) counts as no index: in_step is False."""
        idx = self._index
        if idx is None and self.dim and not self._index_file_bad:
            idx = VectorIndex.load(self.path / INDEX_NAME, self.dim, self.index_cfg)
            self._index_file_bad = idx is None and (self.path / INDEX_NAME).exists()
        n_idx = idx.ntotal if idx else 0
        with self._snapshot():
            n_db = self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            gen = self.generation()
        return {"in_step": idx is not None and n_idx == n_db and idx.generation == gen, "vectors_in_db": n_db,
                "vectors_in_index": n_idx, "db_generation": gen, "index_generation": idx.generation if idx else None}

    # --- writing -----------------------------------------------------------------------------------------------

    def add(self, text: str = "", *, session: str = "default", turn: int | None = None, timestamp: Any = None,
            speaker: str = "user", image: str | None = None, caption: str | None = None,
            saliency: float | None = None, vector: Any = None, image_vector: Any = None,
            source: str | None = None) -> int:
        """Remember one turn; returns its id. `vector` / `image_vector` skip the encoder for text / image."""
        return self.add_many([dict(text=text, session=session, turn=turn, timestamp=timestamp, speaker=speaker,
                                   image=image, caption=caption, saliency=saliency, vector=vector,
                                   image_vector=image_vector, source=source)])[0]

    def add_many(self, items: Sequence[dict], batch_size: int = 256) -> list[int]:
        """Remember many turns (dicts with add()'s keywords), encoded in batches, one transaction per batch."""
        ids: list[int] = []
        for start in range(0, len(items), batch_size):
            ids += self._add_batch(items[start:start + batch_size], start)
        return ids

    def add_once(self, items: Sequence[dict], batch_size: int = 256) -> tuple[list[int], int]:
        """Like add_many, but idempotent by `source`: an item whose source some memory already has is skipped, so
        re-importing a file after a kill adds only what is missing. Every item needs a source (`import_key`). The
        check runs again inside each batch's write transaction, so two importers of one file never both add an
        item. Returns (ids of the memories added, items skipped)."""
        keys = [it.get("source") for it in items]
        if any(not isinstance(k, str) or not k for k in keys):
            raise MemoryInputError("add_once: every item needs a non-empty source (its import key)")
        self.db.execute("CREATE INDEX IF NOT EXISTS memories_source ON memories(source)")
        ids: list[int] = []
        skipped = 0
        for start in range(0, len(items), batch_size):
            batch = list(items[start:start + batch_size])
            have = self._sources_present([it["source"] for it in batch])
            todo = [it for it in batch if it["source"] not in have]
            skipped += len(batch) - len(todo)
            if todo:
                added = self._add_batch(todo, start, skip_present_sources=True)
                skipped += len(todo) - len(added)
                ids += added
        return ids, skipped

    def _sources_present(self, sources: list[str]) -> set[str]:
        out: set[str] = set()
        for k in range(0, len(sources), 500):  # SQLite's bound-parameter limit
            chunk = sources[k:k + 500]
            out |= {r[0] for r in self.db.execute(
                f"SELECT source FROM memories WHERE source IN ({','.join('?' * len(chunk))})", chunk)}
        return out

    def _add_batch(self, items: Sequence[dict], offset: int, skip_present_sources: bool = False) -> list[int]:
        prepared = []
        for i, it in enumerate(items, offset):
            unknown = set(it) - {"text", "session", "turn", "timestamp", "speaker", "image", "caption", "saliency",
                                 "vector", "image_vector", "source"}
            if unknown:
                raise MemoryInputError(f"memory item {i}: unknown field(s) {sorted(unknown)}")
            text = (it.get("text") or "").strip()
            caption = (it.get("caption") or "").strip() or None
            image = it.get("image")
            what = f"memory item {i} (session {it.get('session', 'default')!r}, turn {it.get('turn')})"
            if not text and not caption and not image:
                raise MemoryInputError(f"{what}: text is empty and there is no image or caption; nothing to remember")
            if image is not None and it.get("image_vector") is None and not Path(image).is_file():
                raise FileNotFoundError(f"{what}: image {image} does not exist; fix the path or drop the image")
            sal = it.get("saliency")
            if sal is not None and not (isinstance(sal, (int, float)) and 1 <= sal <= 10):
                raise MemoryInputError(f"{what}: saliency {sal!r} must be a number in 1..10")
            prepared.append(dict(it, text=text, caption=caption, image=image, what=what, ts=to_unix(it.get("timestamp")),
                                 session=str(it.get("session", "default")), speaker=str(it.get("speaker", "user"))))
        # Encode what has no vector yet, in batches per modality.
        vecs: list[dict[str, np.ndarray]] = [{} for _ in prepared]
        todo_text = [(j, "text", memory_key(p["speaker"], p["text"], p["caption"])) for j, p in enumerate(prepared)
                     if (p["text"] or p["caption"]) and p.get("vector") is None]
        if todo_text:
            enc = self._encode_texts([t for _, _, t in todo_text], prepared[todo_text[0][0]]["what"])
            for (j, mod, _), v in zip(todo_text, enc):
                vecs[j][mod] = v
        todo_img = [j for j, p in enumerate(prepared) if p["image"] and p.get("image_vector") is None]
        if todo_img and self.images_embedded:
            try:
                enc = self._encode_images([prepared[j]["image"] for j in todo_img], prepared[todo_img[0]]["what"])
            except NotImplementedError as e:  # a text-only encoder (MiniLM): keep the image path and caption only
                logger.warning("memory store %s: %s; images are remembered by path and caption only", self.path, e)
                self.images_embedded = False
            else:
                for j, v in zip(todo_img, enc):
                    vecs[j]["image"] = v
        for j, p in enumerate(prepared):
            if p.get("vector") is not None:
                vecs[j]["text"] = p["vector"]
            if p.get("image_vector") is not None:
                vecs[j]["image"] = p["image_vector"]
            vecs[j] = {m: self._check_vector(v, f"{p['what']} [{m}]") for m, v in vecs[j].items()}
        # Saliency: given, a rater, or the heuristic (novelty against the session's earlier memories).
        for j, p in enumerate(prepared):
            if p.get("saliency") is None:
                if self.saliency_fn is not None:
                    s = float(self.saliency_fn(p["text"], p["caption"], p["image"]))
                    if not (1 <= s <= 10):
                        raise MemoryInputError(f"{p['what']}: saliency rater returned {s}; it must return 1..10")
                    p["saliency"] = s
                else:
                    novelty = self._novelty(p["session"], list(vecs[j].values()),
                                            [v for q, vv in zip(prepared[:j], vecs[:j]) if q["session"] == p["session"]
                                             for v in vv.values()])
                    p["saliency"] = heuristic_saliency(novelty, bool(p["image"]))
        ids = []
        next_turn: dict[str, int] = {}
        with self._write():
            present = self._sources_present([p["source"] for p in prepared]) if skip_present_sources else set()
            for j, p in enumerate(prepared):
                if p.get("source") in present:  # another importer committed it since add_once looked
                    continue
                turn = p.get("turn")
                if turn is None:
                    if p["session"] not in next_turn:
                        next_turn[p["session"]] = self.db.execute(
                            "SELECT COALESCE(MAX(turn) + 1, 0) FROM memories WHERE session=?",
                            (p["session"],)).fetchone()[0]
                    turn = next_turn[p["session"]]
                next_turn[p["session"]] = max(next_turn.get(p["session"], 0), int(turn) + 1)
                cur = self.db.execute(
                    "INSERT INTO memories (session, turn, timestamp, speaker, text, image, caption, saliency, source)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (p["session"], int(turn), p["ts"], p["speaker"], p["text"], p["image"], p["caption"],
                     float(p["saliency"]), p.get("source")))
                mid = cur.lastrowid
                self.db.executemany("INSERT INTO vectors (vector_id, memory_id, modality, vec) VALUES (?,?,?,?)",
                                    [(mid * VECTOR_SLOTS + MODALITY_SLOT[m], mid, m, v.astype(np.float32).tobytes())
                                     for m, v in vecs[j].items()])
                ids.append(mid)
            self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
        self._catch_up()
        return ids

    def _catch_up(self) -> None:
        """After a write: bring what this object holds in memory (index, scoring columns) in step with it."""
        if self._index is not None:
            self._sync()
        if self._columns is not None:
            with self._snapshot():
                self._columns_sync()

    def _novelty(self, session: str, vs: list[np.ndarray], batch_prev: list[np.ndarray]) -> float:
        """1 - the best cosine of this memory's vectors against the session's earlier memories (1 when first)."""
        best = -1.0
        if batch_prev:
            best = max(best, float(np.max(np.stack(batch_prev) @ np.stack(vs).T)))
        n = self.db.execute("SELECT COUNT(*) FROM vectors v JOIN memories m ON v.memory_id=m.id WHERE m.session=?",
                            (session,)).fetchone()[0]
        if 0 < n <= self.exhaustive_below:
            _, prev = self._all_vectors("WHERE memory_id IN (SELECT id FROM memories WHERE session=?)", (session,))
            best = max(best, float(np.max(prev @ np.stack(vs).T)))
        elif n > self.exhaustive_below and (idx := self._sync()) is not None:
            for v in vs:
                s, _ = idx.search(v, 1)
                if len(s):
                    best = max(best, float(s[0]))
        return 1.0 if best < -0.5 else float(np.clip(1.0 - best, 0.0, 1.0))

    def mark_accessed(self, memory_ids: Iterable[int], now: Any = None) -> None:
        """Count a retrieval of these memories at `now` (what search() does itself when update_access is on): one
        committed transaction, mirrored in the scoring columns (`access_generation` tells other connections)."""
        now_ts = to_unix(now)
        ids = [int(m) for m in memory_ids]
        with self._write():
            self.db.executemany("UPDATE memories SET access_count = access_count + 1, last_access=? WHERE id=?",
                                [(now_ts, m) for m in ids])
            self.db.execute("INSERT INTO meta VALUES ('access_generation', '1') "
                            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")
            access_gen = int(self._meta("access_generation"))
        cols = self._columns
        if cols is not None and cols.access_generation == access_gen - 1:   # no other connection counted since
            cols.count_access(ids)
            cols.access_generation = access_gen

    def forget(self, now: Any = None, threshold: float = 0.05, strength_hours: float = 24.0,
               dry_run: bool = False) -> list[int]:
        """MemoryBank-style forgetting: retention exp(-dt / S) with S = strength_hours * (1 + access count) and
        dt the hours since the last access (or creation); memories whose retention < threshold are deleted.
        threshold must be in (0, 1) (1 or more would forget every memory) and strength_hours above 0."""
        if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
            raise MemoryInputError(f"forget: threshold {threshold!r} must be between 0 and 1 (a retention; at 1 or "
                                   "more every memory is forgotten). Fix: give e.g. 0.05")
        if not (isinstance(strength_hours, (int, float)) and math.isfinite(strength_hours) and strength_hours > 0):
            raise MemoryInputError(f"forget: strength_hours {strength_hours!r} must be a number of hours above 0 "
                                   "(how slowly an unused memory fades). Fix: give e.g. 24")
        now_ts = to_unix(now)
        rows = self.db.execute("SELECT id, timestamp, last_access, access_count FROM memories").fetchall()
        gone = [mid for mid, ts, la, ac in rows
                if math.exp(-max(0.0, now_ts - (la or ts)) / 3600.0 / (strength_hours * (1 + ac))) < threshold]
        if gone and not dry_run:
            with self._write():
                self.db.executemany("DELETE FROM memories WHERE id=?", [(m,) for m in gone])
                self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
                self.db.execute("UPDATE meta SET value = (SELECT value FROM meta WHERE key='generation') "
                                "WHERE key='delete_generation'")
            logger.info("forgot %d of %d memories (retention < %g)", len(gone), len(rows), threshold)
            self._sync()  # deletions: the index is rebuilt from the database, then saved
            self._save_index()
            self._catch_up()
        return gone

    # --- searching ---------------------------------------------------------------------------------------------

    def search(self, query_text: str | None = None, query_image: str | None = None, query_vector: Any = None,
               now: Any = None, k: int = 10, weights: dict[str, float] | None = None, session: str | None = None,
               before: Any = None, update_access: bool | None = None) -> list[Retrieved]:
        """Top-k memories by the weighted sum of their components (`mmemory.memory.scoring.combine`: similarities
        z-scored over the candidates, priors on their own scale).

        Give exactly one of query_text, query_image, query_vector (the lexical, speaker, temporal and dates components
        need query_text: the store's default weights drop them for the others, explicit weights may not ask for
        them). `session` and `before` (strictly older than this time) filter the memories; `now` (default: the
        current time) is the time recency is measured from, and the time a question's dates without a year are
        resolved against.
        """
        given = [x is not None for x in (query_text, query_image, query_vector)]
        if sum(given) != 1:
            raise MemoryInputError("search: give exactly one of query_text, query_image or query_vector")
        if query_text is not None and not query_text.strip():
            raise MemoryInputError("search: query_text is empty; ask something")
        if k < 1:
            raise MemoryInputError(f"search: k must be >= 1, got {k}")
        explicit = weights is not None
        weights = check_weights(weights) if explicit else self.weights
        if query_vector is not None:
            q = self._check_vector(query_vector, "search query")
        elif query_text is not None:
            q = self._check_vector(self._encode_texts([query_text], "search query")[0], "search query")
        else:
            q = self._check_vector(self._encode_images([query_image], "search query")[0], "search query")
        now_ts = to_unix(now)
        with self._snapshot():  # the hits' rows of the state they were scored in
            scored = self._score(q, query_text, now_ts, weights, explicit, session, before)
            if scored is None:
                return []
            top = scored.order()[:k]
            rows = {r[0]: r for r in self._rows(scored.ids[top].tolist())}   # the only rows a search reads
        hits = [scored.hit(i, self._memory(rows[m])) for i, m in zip(top, scored.ids[top].tolist()) if m in rows]
        if (self.update_access if update_access is None else update_access) and hits and not self.readonly:
            self.mark_accessed(self.accessed_ids(scored, k, weights), now_ts)
        return hits

    def score_candidates(self, query_text: str, now: Any = None, weights: dict[str, float] | None = None,
                         session: str | None = None, before: Any = None) -> "Scored | None":
        """Every candidate of a text search as arrays (ids, raw components, neighbours, score), in candidate order;
        None when there is none. What `search` ranks, without building a hit per candidate (`evaluate` scores
        every candidate of every query); `Scored.order()` ranks them exactly as `search` does."""
        if not query_text or not query_text.strip():
            raise MemoryInputError("score_candidates: query_text is empty; ask something")
        explicit = weights is not None
        weights = check_weights(weights) if explicit else self.weights
        q = self._check_vector(self._encode_texts([query_text], "search query")[0], "search query")
        return self._score(q, query_text, to_unix(now), weights, explicit, session, before, with_groups=True)

    def _score(self, q: np.ndarray, query_text: str | None, now_ts: float, weights: dict[str, float],
               explicit: bool, session: str | None, before: Any, with_groups: bool = False) -> "Scored | None":
        with self._snapshot():  # candidates, their columns, turn counts and texts of one committed state
            cand = self._candidates(q, session, None if before is None else to_unix(before))
            if not cand:
                return None
            if query_text is None and explicit and any(weights.get(c, 0) > 0 for c in ("lexical", *CUES)):
                raise MemoryInputError(f"search: the lexical, {', '.join(CUES)} components need query_text")
            cols = self._columns_sync()
            mids = np.fromiter(cand, dtype=np.int64, count=len(cand))
            mids = mids[cols.known(mids)]
            raw = {"relevance": np.array([cand[m] for m in mids.tolist()])}
            raw["recency"] = recency(self._ages(mids, cols, now_ts), self.half_life)
            raw["frequency"] = frequency(cols.access_count[mids])
            raw["saliency"] = saliency(cols.saliency[mids])
            if query_text is not None:
                raw.update(self._text_cues(query_text, mids, cols, now_ts))
        sessions, turns = cols.session[mids], cols.turn[mids]
        # (previous, next) candidate positions: only a neighbours weight reads them
        neighbours = neighbour_positions(sessions, turns) if weights.get("neighbours") else None
        groups = None   # episode numbers: only the episode and diversity weights read them
        if with_groups or weights.get("episode") or weights.get("diversity"):
            groups = episodes(cols.sessions(mids), cols.timestamp[mids], self.episode_gap_hours)
        score, norm = combine(raw, {c: w for c, w in weights.items() if c in raw or c in CONTEXT}, neighbours, groups)
        return Scored(mids, sessions, turns, raw, norm, neighbours, score, groups)

    def accessed_ids(self, scored: "Scored", k: int, weights: dict[str, float] | None = None) -> list[int]:
        """The ids that rank in the top k by the score WITHOUT the frequency component: what a search counts as
        accessed (frequency never feeds on its own retrievals)."""
        weights = check_weights(weights) if weights is not None else self.weights
        if not weights.get("frequency"):
            return [int(scored.ids[i]) for i in scored.order()[:k]]
        raw = scored.raw
        rest = {c: w for c, w in weights.items() if c != "frequency" and (c in raw or c in CONTEXT)}
        if rest.get("neighbours") and scored.neighbours is None:
            raise ValueError("accessed_ids: these weights have a neighbours component but the candidates were scored "
                             "without one; score them with these weights (or take() them, which adds neighbours)")
        if (rest.get("episode") or rest.get("diversity")) and scored.groups is None:
            raise ValueError("accessed_ids: these weights have an episode or diversity component but the candidates "
                             "were scored without episodes; score them with these weights")
        counted = combine(raw, rest, scored.neighbours, scored.groups)[0] if any(
            v for c, v in rest.items() if c not in CONTEXT) else np.zeros(len(scored.ids))
        return [int(scored.ids[i]) for i in np.lexsort((scored.ids, -raw["relevance"], -counted))[:k]]

    def accessed(self, hits: list[Retrieved], k: int, weights: dict[str, float] | None = None) -> list[int]:
        """The ids among `hits` (every candidate of a search, as `evaluate` asks for) that rank in the top k by the
        score without the frequency component: what search() itself counts as accessed."""
        weights = check_weights(weights) if weights is not None else self.weights
        if not weights.get("frequency") or not hits:
            return [h.memory.id for h in hits[:k]]
        raw = {c: np.array([h.raw[c] for h in hits]) for c in hits[0].raw}
        neighbours = neighbour_positions([h.memory.session for h in hits], [h.memory.turn for h in hits])
        use = {c: w for c, w in weights.items() if c != "frequency" and (c in raw or c in CONTEXT)}
        groups = episodes([h.memory.session for h in hits], np.array([to_unix(h.memory.timestamp) for h in hits]),
                          self.episode_gap_hours) if use.get("episode") or use.get("diversity") else None
        counted = combine(raw, use, neighbours, groups)[0] if any(v for c, v in use.items() if c not in CONTEXT) \
            else np.zeros(len(hits))
        ids = np.array([h.memory.id for h in hits], dtype=np.int64)
        return [hits[i].memory.id for i in np.lexsort((ids, -raw["relevance"], -counted))[:k]]

    def _text_cues(self, query: str, mids: np.ndarray, cols: ScoringColumns, now_ts: float) -> dict[str, np.ndarray]:
        """Lexical BM25 over the memories' keys, whether the question names the speaker, time cues, and whether a
        period the question names is one the memory is from or refers to (`lexical.question_periods`)."""
        cues = self._cues
        new = [m for m in mids.tolist() if m not in cues]
        for start in range(0, len(new), 900):   # memories never change: a text is read, and its cues computed, once
            chunk = new[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for m, speaker, text, caption, ts in self.db.execute(
                    f"SELECT id, speaker, text, caption, timestamp FROM memories WHERE id IN ({marks})", chunk):
                cues[m] = lexical.DocCues(lexical.tokenize(memory_key(speaker, text, caption)), text, ts)
        docs = [cues[m] for m in mids.tolist()]
        out = {"lexical": lexical.bm25_counted(lexical.tokenize(query), docs)}
        speakers = cols.speaker[mids]
        named = {c: lexical.names_speaker(query, cols.names[c]) for c in set(speakers.tolist())}
        out["speaker"] = np.array([named[c] for c in speakers.tolist()], dtype=np.float64)
        temporal = np.zeros(len(mids))
        if lexical.asks_when(query):   # "when did ...": the turn that says when (yesterday, last May, 2022)
            temporal = np.array([d.time_cue for d in docs], dtype=np.float64)
        dates = lexical.named_dates(query)
        if dates:                      # "... in May 2023": memories from that period
            temporal = np.maximum(temporal, [any(d.year == y and (mo is None or d.month == mo) for y, mo in dates)
                                             for d in docs])
        out["temporal"] = temporal
        periods = lexical.question_periods(query, now_ts)   # "on 3 June, 2023": that day, "in May": the latest May
        out["dates"] = (np.array([lexical.names_period(periods, d.periods) for d in docs], dtype=np.float64)
                        if periods else np.zeros(len(mids)))
        return out

    def _candidates(self, q: np.ndarray, session: str | None, before: float | None) -> dict[int, float]:
        """{memory id: relevance (best cosine over its vectors)} for the memories to score."""
        where, args = [], []
        if session is not None:
            where.append("m.session = ?")
            args.append(session)
        if before is not None:
            where.append("m.timestamp < ?")
            args.append(before)
        cond = ("WHERE " + " AND ".join(where)) if where else ""
        idx = None
        if where:
            n = self.db.execute(f"SELECT COUNT(*) FROM vectors v JOIN memories m ON v.memory_id = m.id {cond}",
                                args).fetchone()[0]
        else:  # no filter: the index knows the count (a COUNT(*) over millions of rows would dominate the search)
            idx = self._sync()
            n = idx.ntotal if idx is not None else 0
        if n == 0:
            return {}
        if n <= self.exhaustive_below:
            rows = self.db.execute(f"SELECT v.memory_id, v.vec FROM vectors v JOIN memories m ON v.memory_id = m.id "
                                   f"{cond}", args).fetchall()
            sims = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim) @ q
            out: dict[int, float] = {}
            for (mid, _), s in zip(rows, sims):
                out[mid] = max(out.get(mid, -2.0), float(s))
            return out
        idx = idx or self._sync()
        allowed = None
        if where:
            allowed = np.fromiter((r[0] for r in self.db.execute(
                f"SELECT v.vector_id FROM vectors v JOIN memories m ON v.memory_id = m.id {cond}", args)), np.int64)
        scores, vids = idx.search(q, self.n_candidates, allowed)
        if len(vids) == 0:
            return {}
        if idx.kind != "ivfpq":
            # flat / hnsw / ivfflat / pca_hnsw (re-ranked on its full vectors) score exact cosines. A memory's best
            # vector scores at least as high as any of its returned ones, so the max over returned ones is exact.
            out = {}
            for vid, score in zip(vids.tolist(), scores.tolist()):
                mid = vid // VECTOR_SLOTS
                out[mid] = max(out.get(mid, -2.0), score)
            return out
        # IVF-PQ scores are approximate: rescore exactly from the stored vectors.
        ph = ",".join("?" * len(vids))
        rows = self.db.execute(f"SELECT memory_id, vec FROM vectors WHERE memory_id IN "
                               f"(SELECT memory_id FROM vectors WHERE vector_id IN ({ph}))",
                               [int(v) for v in vids]).fetchall()
        sims = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim) @ q
        out = {}
        for (mid, _), s in zip(rows, sims):
            out[mid] = max(out.get(mid, -2.0), float(s))
        return out

    _COLS = "id, session, turn, timestamp, speaker, text, image, caption, access_count, last_access, saliency, source"

    def _rows(self, mids: list[int]) -> list[tuple]:
        out = []
        for start in range(0, len(mids), 900):
            chunk = mids[start:start + 900]
            out += self.db.execute(f"SELECT {self._COLS} FROM memories WHERE id IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
        return out

    @staticmethod
    def _memory(r: tuple) -> Memory:
        return Memory(id=r[0], session=r[1], turn=r[2], timestamp=to_iso(r[3]), speaker=r[4], text=r[5], image=r[6],
                      caption=r[7], access_count=r[8], last_access=to_iso(r[9]), saliency=r[10], source=r[11])

    def _ages(self, mids: np.ndarray, cols: ScoringColumns, now_ts: float) -> np.ndarray:
        """Each memory's age in the recency unit. Hours read the columns only; span and turns also read one
        aggregate per session (its first timestamp; its latest turn by `now`) from SQLite's (session, timestamp)
        index."""
        ts = cols.timestamp[mids]
        if self.recency_unit == "hours":
            return (now_ts - ts) / 3600.0
        sessions = cols.sessions(mids)
        if self.recency_unit == "span":   # fraction of the session's time so far: scale-free on any conversation
            first = {s: self.db.execute("SELECT MIN(timestamp) FROM memories WHERE session=?", (s,)).fetchone()[0]
                     for s in set(sessions)}
            return (now_ts - ts) / np.maximum(now_ts - np.array([first[s] for s in sessions], dtype=np.float64), 1.0)
        latest = {s: self.db.execute("SELECT COALESCE(MAX(turn), 0) FROM memories WHERE session=? AND timestamp<=?",
                                     (s, now_ts)).fetchone()[0] for s in set(sessions)}
        return (np.array([latest[s] for s in sessions], dtype=np.int64) + 1 - cols.turn[mids]).astype(np.float64)

    # --- reading -----------------------------------------------------------------------------------------------

    def get(self, memory_id: int) -> Memory:
        rows = self._rows([memory_id])
        if not rows:
            raise KeyError(f"memory {memory_id} is not in {self.path}")
        return self._memory(rows[0])

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM memories").fetchone()[0]

    def memories(self, session: str | None = None) -> Iterable[Memory]:
        cond, args = ("WHERE session=?", (session,)) if session is not None else ("", ())
        for r in self.db.execute(f"SELECT {self._COLS} FROM memories {cond} ORDER BY timestamp, id", args):
            yield self._memory(r)

    def stats(self) -> dict:
        n, sessions, images, acc = self.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT session), COUNT(image), COALESCE(SUM(access_count), 0) FROM memories"
        ).fetchone()
        db_bytes = sum(f.stat().st_size for f in self.path.glob(DB_NAME + "*"))
        return {"path": str(self.path), "memories": n, "sessions": sessions, "with_image": images,
                "total_accesses": acc, "dim": self.dim, "index_type": self.index_cfg.type,
                "db_bytes": db_bytes, **{f"index_{k}": v for k, v in self.check_index().items()}}

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Save the index if it has unsaved additions (the database is always committed)."""
        if self.dim is None or self.readonly:
            return
        self._sync()
        if self._unsaved or not (self.path / INDEX_NAME).exists():
            self._save_index()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def import_key(row: dict) -> str:
    """The idempotence key of a turn of the memory-sessions turns JSONL: its (session, turn) when it has a turn_id,
    else a hash of its content. Stored as the memory's `source`."""
    if row.get("turn_id") is not None:
        return "turn " + json.dumps([str(row.get("session_id")), str(row["turn_id"])], ensure_ascii=False)
    content = json.dumps({k: row.get(k) for k in ("session_id", "timestamp", "speaker", "text", "image", "caption")},
                         sort_keys=True, ensure_ascii=False)
    return "sha256 " + hashlib.sha256(content.encode("utf-8")).hexdigest()


def import_turns(store: "MemoryStore", path: str | Path, torn_tail: bool = False, batch_size: int = 256) -> dict:
    """Add the turns of a memory-sessions turns JSONL (README, "Data contracts") to `store`, idempotently: each
    turn's `import_key` is its memory's source, and a turn already in the store is skipped, so re-importing after a
    kill adds only what is missing. A row without session_id, timestamp, speaker or text, or a (session, turn)
    repeated in the file, is a MemoryInputError naming the file and the row. torn_tail: skip a malformed last line
    (a write cut short) instead of refusing it. Returns {read, added, already_in_store, repeated_in_file}."""
    from mmemory.io import excerpt, read_jsonl

    path = Path(path)
    rows = read_jsonl(path, torn_tail=torn_tail)
    items, seen = [], {}
    repeated = 0
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise MemoryInputError(f"{path}: row {n} is {excerpt(row, 80)}, not an object; see the README, "
                                   "'Data contracts' (memory sessions)")
        missing = [k for k in ("session_id", "timestamp", "speaker", "text") if k not in row]
        if missing:
            raise MemoryInputError(f"{path}: row {n} lacks {missing}; see the README, 'Data contracts' (memory "
                                   "sessions)")
        key = import_key(row)
        if key in seen:
            if row.get("turn_id") is not None:
                raise MemoryInputError(f"{path}: row {n} repeats turn_id {excerpt(row['turn_id'], 80)} of session "
                                       f"{excerpt(row['session_id'], 80)} (row {seen[key]}); turn ids must be unique "
                                       "within their session")
            repeated += 1  # the same content twice, without a turn id: one memory
            continue
        seen[key] = n
        items.append({"text": str(row.get("text") or ""), "session": str(row["session_id"]),
                      "timestamp": row["timestamp"], "speaker": str(row["speaker"]), "image": row.get("image"),
                      "caption": row.get("caption"), "source": key})
    ids, present = store.add_once(items, batch_size=batch_size)
    out = {"read": len(rows), "added": len(ids), "already_in_store": present, "repeated_in_file": repeated}
    logger.info("%s: %s", path, out)
    return out
