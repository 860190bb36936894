"""Store one parsed dump: find the items it shows again, merge, and write.

Runs inside the caller's transaction (one per file). Reads are batched up
front (every natural id, body head, title and paragraph hash of the dump in
a few queries), matching runs in memory, and writes go out in bulk at the
end, so a dump costs a handful of statements, not several per item.

Merging keeps every id resolvable: when two stored items are found to be
one, the smaller id survives, the other becomes an alias, and every
reference to it is re-pointed.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.bulk import JSONText, bulk_insert
from mirror.db.models import Alias, Author, Comment, Community, DumpFile, Observation, Post
from mirror.db.models import Fragment as Paragraph
from mirror.ingest import identity, match
from mirror.ingest.observe import Copy, DumpMeta, Observed
from mirror.ingest.rows import (
    Row,
    author_row,
    community_row,
    fold,
    needs_fragments,
    paragraph_hashes,
    with_references,
)
from mirror.reconstruct.model import ParsedAuthor, ParsedCommunity

TABLES: dict[str, sa.Table] = {
    "post": table_of(Post),
    "comment": table_of(Comment),
    "community": table_of(Community),
    "author": table_of(Author),
}
TABLES_ALIAS = table_of(Alias)
TABLES_PARAGRAPH = table_of(Paragraph)
TABLES_OBSERVATION = table_of(Observation)
KIND_OF_PREFIX = identity.KIND_OF_PREFIX
#: Columns that hold ids of other items: re-pointed when their target merges.
REFERENCES: dict[str, list[tuple[sa.Table, str]]] = {
    "community": [(TABLES["post"], "community_id")],
    # Authors never merge: their id is their handle.
    "author": [],
    "post": [(TABLES["comment"], "post_id")],
    "comment": [(TABLES["comment"], "parent_id")],
}
_BATCH = 500
#: What two copies must share whatever their texts (part of DumpWriter._compatible).
_FIELDS_AGREE = {"post": match.posts_compatible, "comment": match.comments_compatible}
#: More stored items than this sharing a head, title or paragraph make it common.
CANDIDATES_PER_KEY = 16


def kind_of(item_id: str) -> str:
    return KIND_OF_PREFIX[item_id[0]]


@dataclass
class StoreResult:
    posts: int = 0
    comments: int = 0
    merged: int = 0
    observations: int = 0


@dataclass
class _Pending:
    """A dump waiting in a batch, with its copies computed."""

    meta: DumpMeta
    observed: Observed


#: Columns that hold another item's id (the item's own id aside).
_REFERENCE_COLUMNS = ("author_id", "community_id", "post_id", "parent_id")
#: Row keys resolved by the writer, so added to a copy's provenance there.
_RESOLVED = ("community_id", "post_id", "parent_id")


class DumpWriter:
    """The unit of work for a batch of dumps, in the caller's transaction.

    ``add`` every dump, then ``write``: one lookup for the whole batch, the
    matching in memory, one flush. Later dumps of a batch see the items of
    earlier ones (in memory), so the result is the same as storing them one
    at a time.
    """

    def __init__(self, connection: sa.Connection, *, now: datetime) -> None:
        self.conn = connection
        self.now = now
        self.pending: list[_Pending] = []
        self.rows: dict[str, Row] = {}
        self.new: dict[str, None] = {}  # insertion-ordered set of ids to insert
        self.dirty: set[str] = set()
        self.redirect: dict[str, str] = {}
        self.gone: set[str] = set()  # stored rows merged away: re-point, then delete
        self.aliases: dict[str, str] = {}
        self.checked: set[str] = set()  # natural ids looked up (found or not)
        self.new_aliases: set[str] = set()
        self.by_head: dict[str, set[str]] = defaultdict(set)
        self.by_title: dict[str, set[str]] = defaultdict(set)
        self.by_para: dict[str, set[str]] = defaultdict(set)
        self.by_instance: dict[str, set[str]] = defaultdict(set)
        self.new_paragraphs: set[str] = set()
        self.dump_files: list[Row] = []
        self.observations: list[Row] = []
        self.result = StoreResult()
        # The dump being written (natural ids of unplaceable items use it).
        self.sha = ""
        self.captured_at: datetime | None = None

    # -- entry points -------------------------------------------------------

    def add(self, meta: DumpMeta, observed: Observed) -> None:
        """Queue a dump, as ``observe(meta, dump)`` saw it."""
        self.pending.append(_Pending(meta, observed))

    def write(self) -> list[StoreResult]:
        """Store every added dump; one result per dump, in order."""
        self._lookup(self.pending)
        results = []
        for item in self.pending:
            self.result = StoreResult()
            self.sha, self.captured_at = item.meta.sha256, item.meta.captured_at
            self._write_one(item)
            results.append(self.result)
        self._flush()
        return results

    def _write_one(self, item: _Pending) -> None:
        observed = item.observed
        posts, comments = observed.posts, observed.comments
        self.dump_files.append(
            {
                "sha256": item.meta.sha256,
                "name": item.meta.name,
                "kind": item.meta.kind,
                "size": item.meta.size,
                "captured_at": item.meta.captured_at,
                "ingested_at": self.now,
            }
        )
        authors = self._resolve_authors(observed.people)
        communities = self._resolve_communities(observed.places)
        for obs in posts:
            obs.row["author_id"] = authors.get(obs.row["_author"])
            community = obs.row["_community"]
            obs.row["community_id"] = communities.get(id(community)) if community else None
        for obs in comments:
            obs.row["author_id"] = authors.get(obs.row["_author"])

        post_ids: dict[int, str] = {}
        for obs in posts:
            post_ids[obs.ref] = self._resolve(obs)
        comment_ids: dict[int, str] = {}
        for obs in comments:
            if obs.post_ref is not None:
                obs.row["post_id"] = self.canon(post_ids[obs.post_ref])
            if obs.parent_ref is not None:
                obs.row["parent_id"] = self.canon(comment_ids[obs.parent_ref])
            comment_ids[obs.ref] = self._resolve(obs)

    # -- observations -------------------------------------------------------

    # -- authors and communities -------------------------------------------

    def _resolve_authors(self, people: list[ParsedAuthor]) -> dict[str | None, str | None]:
        ids: dict[str | None, str | None] = {None: None}
        for author in people:
            if author.handle is None:
                continue
            author_id = identity.author_id(author)
            assert author_id is not None
            ids[author.handle] = author_id
            incoming = author_row(author)
            row = self._load(author_id)
            if row is None:
                self._create("author", {"id": author_id, **incoming})
                self._add_alias(author_id, author_id, "author")
            elif fold("author", row, incoming):
                self._touch(author_id)
        return ids

    def _resolve_communities(self, places: list[ParsedCommunity]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        seen: dict[str, str] = {}
        for community in places:
            natural = identity.community_id(community)
            if natural is None:
                out[id(community)] = None
                continue
            if natural in seen:
                out[id(community)] = seen[natural]
                continue
            resolved = self._resolve_community(natural, community)
            seen[natural] = out[id(community)] = resolved
        return out

    def _resolve_community(self, natural: str, community: ParsedCommunity) -> str:
        incoming = community_row(community)
        target = self._alias(natural)
        if target is None and community.instance and community.title:
            target = self._find_community(community)
        if target is None:
            self._create("community", {"id": natural, **incoming})
            self._add_alias(natural, natural, "community")
            return natural
        row = self.rows[target]
        if fold("community", row, incoming):
            self._touch(target)
        self._add_alias(natural, target, "community")
        return self._maybe_rename(target, natural)

    def _find_community(self, community: ParsedCommunity) -> str | None:
        """A stored community of the same instance and title that can take this name."""
        title = match.normalize(community.title or "").casefold()
        candidates = (
            self.rows[self.canon(i)] for i in self.by_instance.get(community.instance or "", ())
        )
        matches = {
            row["id"]
            for row in candidates
            if row.get("instance") == community.instance
            and row.get("title")
            and match.normalize(row["title"]).casefold() == title
            and (row.get("name") is None or community.name is None or row["name"] == community.name)
        }
        return matches.pop() if len(matches) == 1 else None

    # -- posts and comments ------------------------------------------------

    def _lookup(self, batch: Sequence[_Pending]) -> None:
        """Load every stored row the batch may match: one query, plus one per table hit.

        Natural ids (through the alias table), body heads, real titles,
        paragraph hashes and community instances all go into one statement
        whose text never changes (the keys travel as one array parameter).
        """
        observations = [
            o for item in batch for o in (*item.observed.posts, *item.observed.comments)
        ]
        people = [a for item in batch for a in item.observed.people]
        places = [c for item in batch for c in item.observed.places]
        naturals = {o.natural for o in observations} | {o.fallback for o in observations}
        naturals |= {i for i in (identity.author_id(a) for a in people) if i}
        naturals |= {i for i in (identity.community_id(c) for c in places) if i}
        naturals -= self.checked
        by_kind: dict[str, set[str]] = {kind: set() for kind in TABLES}
        for natural in naturals:
            by_kind[kind_of(natural)].add(natural)
        wanted = {
            "naturals": naturals,
            **{f"{kind}_ids": ids for kind, ids in by_kind.items()},
            "post_heads": _heads(observations, "post"),
            "comment_heads": _heads(observations, "comment"),
            "titles": _titles(observations),
            "paragraphs": _paragraphs(observations),
            "instances": _instances(places),
        }
        self.checked |= naturals
        wanted_ids: set[str] = set()
        common: set[tuple[str, str]] = set()
        hits: list[tuple[str, str, str]] = []
        for params in _lookup_batches(wanted):
            for tag, key, value, rank in self.conn.execute(
                _lookup_sql(self.conn), _arrays(self.conn, params)
            ):
                if rank > CANDIDATES_PER_KEY:
                    common.add((tag, key))
                elif tag == "alias":
                    self.aliases[key] = value
                elif tag == "para":
                    self.by_para[key].add(value)
                hits.append((tag, key, value))
        # A paragraph or title shared by many items (a footer, "Weekly
        # thread") identifies nothing: it is not a candidate at all.
        for tag, key, value in hits:
            if (tag, key) in common:
                self.by_para.pop(key, None)
            else:
                wanted_ids.add(value)
        self._load_many(wanted_ids)

    def _resolve(self, obs: Copy) -> str:
        """The id of the item this copy is, creating the item if it is new."""
        row = {**obs.row, "id": obs.natural}
        row["_paragraphs"], row["_hashed"] = obs.paragraphs, row["body"]
        target = self._exact(obs.natural, row)
        if target is None and self._alias(obs.natural) is not None:
            # The natural id belongs to a different item (same opening text
            # and context, different body): take the first free variant.
            for attempt in itertools.count(1):
                row["id"] = obs.fallback if attempt == 1 else f"{obs.fallback}{attempt}"
                target = self._exact(row["id"], row)
                if target is not None or self._alias(row["id"]) is None:
                    break
        if target is None:
            target = self._fuzzy(obs, row)
        # Pieces are comments: a flat dump's post starts where the page does,
        # so its copies are found by their head (equal, prefix or subset).
        if target is None and obs.kind == "comment" and row["confidence"] == "low":
            target = self._whole_of(obs, row)

        if target is None:
            self._create(obs.kind, row)
            self._add_alias(row["id"], row["id"], obs.kind)
            target = row["id"]
            if obs.kind == "post":
                self.result.posts += 1
            else:
                self.result.comments += 1
        else:
            self.result.merged += 1
            self._merge_copy(target, row, obs.kind)
            self._add_alias(row["id"], target, obs.kind)
            target = self._maybe_rename(self.canon(target), row["id"])

        if obs.kind == "comment" and row["confidence"] != "low":
            self._absorb_pieces(target, obs)
        target = self.canon(target)
        self.observations.append(
            {
                "kind": obs.kind,
                "item_id": target,
                "dump_sha256": self.sha,
                "first_line": obs.first_line,
                "last_line": obs.last_line,
                "confidence": obs.row["confidence"],
                "data": JSONText(
                    with_references(obs.data, {k: obs.row[k] for k in _RESOLVED if obs.row.get(k)})
                ),
            }
        )
        self.result.observations += 1
        return target

    def _exact(self, natural: str, row: Row) -> str | None:
        target = self._alias(natural)
        if target is None:
            return None
        stored = self.rows.get(target)
        if stored is None or not self._compatible(row, stored):
            return None
        return target

    def _fuzzy(self, obs: Copy, row: Row) -> str | None:
        """A stored item this copy matches by text (and context)."""
        ids: set[str] = set()
        if row.get("body_head"):
            ids |= self.by_head.get(row["body_head"], set())
        if obs.kind == "post" and row.get("title_key"):
            ids |= self.by_title.get(row["title_key"], set())
        ranked = []
        for candidate in sorted({self.canon(i) for i in ids}):
            stored = self.rows.get(candidate)
            if stored is None or kind_of(candidate) != obs.kind:
                continue
            # Who wrote it is cheap to compare, the texts are not (short
            # bodies share their head across many authors' items).
            if not _FIELDS_AGREE[obs.kind](row, stored):
                continue
            relation = match.text_relation(row.get("body"), stored.get("body"))
            if relation is match.Relation.NONE and not self._same_titled_stub(row, stored):
                continue
            if self._compatible(row, stored):
                ranked.append((relation.value if relation.value else 9, candidate))
        return min(ranked)[1] if ranked else None

    @staticmethod
    def _same_titled_stub(a: Row, b: Row) -> bool:
        """Posts known by title where one copy shows no body."""
        if not (a.get("title_key") and a.get("title_key") == b.get("title_key")):
            return False
        return not a.get("body") or not b.get("body")

    def _whole_of(self, obs: Copy, row: Row) -> str | None:
        """The one surer item that holds this low-confidence piece, if exactly one."""
        holders = {
            self.canon(i)
            for h in obs.paragraphs
            for i in self.by_para.get(h, ())
            if kind_of(i) == obs.kind
        }
        found = [
            i
            for i in sorted(holders)
            if (stored := self.rows.get(i)) is not None
            and stored.get("confidence") != "low"
            and match.is_piece_of(row.get("body"), stored.get("body"))
            and self._compatible(row, stored)
        ]
        return found[0] if len(found) == 1 else None

    def _absorb_pieces(self, target: str, obs: Copy) -> None:
        """Merge low-confidence pieces that turn out to be parts of this item."""
        whole = self.rows[self.canon(target)]
        pieces = {
            self.canon(i)
            for h in obs.paragraphs
            for i in self.by_para.get(h, ())
            if kind_of(i) == obs.kind
        }
        for piece in sorted(pieces):
            piece = self.canon(piece)
            stored = self.rows.get(piece)
            whole = self.rows[self.canon(target)]
            if (
                stored is None
                or piece == whole["id"]
                or stored.get("confidence") != "low"
                or not match.is_piece_of(stored.get("body"), whole.get("body"))
                or not self._compatible(stored, whole)
            ):
                continue
            self._merge_items(whole["id"], piece)

    def _compatible(self, a: Row, b: Row) -> bool:
        kind = kind_of(b["id"])
        if kind == "post":
            if not match.posts_compatible(a, b) or not self._bodies_agree(a, b):
                return False
            ca, cb = a.get("community_id"), b.get("community_id")
            if ca and cb and self.canon(ca) != self.canon(cb):
                return match.communities_compatible(self._load(ca), self._load(cb))
            return True
        if not match.comments_compatible(a, b):
            return False
        if not self._parents_agree(a, b):
            return False
        pa, pb = a.get("post_id"), b.get("post_id")
        if pa and pb and self.canon(pa) != self.canon(pb):
            post_a, post_b = self._load(self.canon(pa)), self._load(self.canon(pb))
            if post_a is None or post_b is None:
                return False
            return self._compatible(post_a, post_b)
        return True

    def _bodies_agree(self, a: Row, b: Row) -> bool:
        if not a.get("body") or not b.get("body"):
            return True
        if match.text_relation(a["body"], b["body"]) is not match.Relation.NONE:
            return True
        low = a.get("confidence") == "low" or b.get("confidence") == "low"
        return low and (
            match.is_piece_of(a["body"], b["body"]) or match.is_piece_of(b["body"], a["body"])
        )

    def _parents_agree(self, a: Row, b: Row) -> bool:
        if not (a.get("parent_known") and b.get("parent_known")):
            return True
        pa, pb = a.get("parent_id"), b.get("parent_id")
        return (pa is None and pb is None) or (
            pa is not None and pb is not None and self.canon(pa) == self.canon(pb)
        )

    # -- merging ------------------------------------------------------------

    def _merge_copy(self, target: str, row: Row, kind: str) -> None:
        stored = self.rows[target]
        other_post = row.get("post_id")
        if kind == "comment" and other_post and stored.get("post_id"):
            a, b = self.canon(other_post), self.canon(stored["post_id"])
            if a != b:
                self._merge_items(a, b)
        if kind == "post" and row.get("community_id") and stored.get("community_id"):
            a, b = self.canon(row["community_id"]), self.canon(stored["community_id"])
            if a != b:
                self._merge_items(a, b)
        row = self._refs(row)
        if fold(kind, stored, row):
            self._touch(target)

    def _merge_items(self, a: str, b: str) -> None:
        """Two stored items are one: the smaller id survives."""
        a, b = self.canon(a), self.canon(b)
        if a == b:
            return
        winner, loser = (a, b) if a < b else (b, a)
        kind = kind_of(winner)
        win_row, lose_row = self._load(winner), self._load(loser)
        assert win_row is not None and lose_row is not None
        self.redirect[loser] = winner
        if kind == "comment":
            pa, pb = win_row.get("post_id"), lose_row.get("post_id")
            if pa and pb and self.canon(pa) != self.canon(pb):
                self._merge_items(pa, pb)
        if kind == "post":
            ca, cb = win_row.get("community_id"), lose_row.get("community_id")
            if ca and cb and self.canon(ca) != self.canon(cb):
                self._merge_items(ca, cb)
        incoming = self._refs(lose_row)
        fold(kind, win_row, incoming)
        self._touch(winner)
        self._retire(loser)
        self._index(win_row)

    def _maybe_rename(self, target: str, natural: str) -> str:
        """Keep the smallest id among an item's natural ids (order-independent)."""
        if natural >= target or self.aliases.get(natural, target) != target:
            return target
        if natural in self.rows:
            return target
        row = dict(self.rows[target])
        row["id"] = natural
        kind = kind_of(target)
        self._create(kind, row)
        self.redirect[target] = natural
        self._retire(target)
        self._add_alias(natural, natural, kind)
        self._index(row)
        return natural

    def _retire(self, old: str) -> None:
        if old in self.new:
            del self.new[old]
        else:
            self.gone.add(old)
        self.dirty.discard(old)

    # -- in-memory bookkeeping -----------------------------------------------

    def canon(self, item_id: str) -> str:
        seen = 0
        while item_id in self.redirect:
            item_id = self.redirect[item_id]
            seen += 1
            if seen > 1000:
                raise RuntimeError(f"redirect cycle at {item_id}")
        return item_id

    def _alias(self, natural: str) -> str | None:
        if natural not in self.aliases:
            if natural in self.checked:
                return None
            self.checked.add(natural)
            table = TABLES.get(KIND_OF_PREFIX.get(natural[:1], ""))
            target = None
            if table is not None:
                target = self.conn.scalar(sa.select(table.c.id).where(table.c.id == natural))
            if target is None:
                alias = TABLES_ALIAS
                target = self.conn.scalar(sa.select(alias.c.target).where(alias.c.alias == natural))
            if target is None:
                return None
            self.aliases[natural] = target
        target = self.canon(self.aliases[natural])
        return target if self._load(target) is not None else None

    def _add_alias(self, natural: str, target: str, kind: str) -> None:
        if self.aliases.get(natural) != target:
            self.aliases[natural] = target
            self.new_aliases.add(natural)

    def _create(self, kind: str, row: Row) -> None:
        row.setdefault("created_at", self.now)
        row["updated_at"] = self.now
        self.rows[row["id"]] = row
        self.new[row["id"]] = None
        self.new_paragraphs.add(row["id"])
        self._index(row)

    def _touch(self, item_id: str) -> None:
        row = self.rows[item_id]
        row["updated_at"] = self.now
        if item_id not in self.new:
            self.dirty.add(item_id)
        if kind_of(item_id) == "comment":
            self.new_paragraphs.add(item_id)
            self._index(row)

    def _index(self, row: Row) -> None:
        """Make a row findable by head, title, paragraphs and instance within the batch."""
        kind = kind_of(row["id"])
        if kind == "community" and row.get("instance"):
            self.by_instance[row["instance"]].add(row["id"])
        if kind not in ("post", "comment"):
            return
        if row.get("body_head"):
            self.by_head[row["body_head"]].add(row["id"])
        if kind == "post" and row.get("title_key"):
            self.by_title[row["title_key"]].add(row["id"])
        if kind == "comment":
            for h in _hashes(row):
                self.by_para[h].add(row["id"])

    def _load(self, item_id: str) -> Row | None:
        item_id = self.canon(item_id)
        if item_id in self.rows:
            return self.rows[item_id]
        if item_id in self.checked and item_id not in self.aliases:
            return None  # the batch lookup found no such id
        self._load_many([item_id])
        return self.rows.get(item_id)

    def _load_many(self, ids: Iterable[str]) -> None:
        """Load stored rows by id, and the posts and communities they point to."""
        wanted = {self.canon(i) for i in ids}
        while wanted:
            by_kind: dict[str, list[str]] = defaultdict(list)
            for item_id in sorted(wanted):
                if item_id not in self.rows and item_id[:1] in KIND_OF_PREFIX:
                    by_kind[kind_of(item_id)].append(item_id)
            loaded: list[Row] = []
            for kind, missing in by_kind.items():
                for chunk in _chunks(missing, _LOOKUP_BATCH):
                    statement = _select_by_id(self.conn, kind)
                    params = _arrays(self.conn, {"ids": chunk})
                    for r in self.conn.execute(statement, params).mappings():
                        row = self.rows[r["id"]] = dict(r)
                        loaded.append(row)
                        self._index(row)
            # Comments are judged with their posts, posts with their communities.
            wanted = {
                self.canon(row[col])
                for row in loaded
                for col in ("post_id", "community_id")
                if row.get(col) and self.canon(row[col]) not in self.rows
            }

    # -- writing ------------------------------------------------------------

    def _flush(self) -> None:
        bulk_insert(self.conn, table_of(DumpFile), self.dump_files, ignore_conflicts=True)
        new_by_kind: dict[str, list[Row]] = {kind: [] for kind in TABLES}
        for item_id in self.new:
            new_by_kind[kind_of(item_id)].append(self._refs(self.rows[item_id]))
        for kind in ("community", "author", "post", "comment"):
            table = TABLES[kind]
            columns = set(table.c.keys())
            new = new_by_kind[kind]
            if kind == "comment":
                new = _parents_first(new)
            bulk_insert(self.conn, table, new)
            dirty = [self._clean(self.rows[i], columns) for i in self.dirty if kind_of(i) == kind]
            for row in dirty:
                self.conn.execute(
                    sa.update(table).where(table.c.id == row["id"]),
                    {k: v for k, v in row.items() if k != "id"},
                )
        self._repoint_and_delete()
        self._write_aliases()
        self._write_observations()
        self._write_paragraphs()

    def _refs(self, row: Row) -> Row:
        """The row with canonical references (bulk_insert takes only table columns)."""
        if not self.redirect:
            return row
        moved = {k: self.canon(v) for k in _REFERENCE_COLUMNS if (v := row.get(k)) in self.redirect}
        return row | moved if moved else row

    def _clean(self, row: Row, columns: set[str]) -> Row:
        return {k: v for k, v in self._refs(row).items() if k in columns}

    def _repoint_and_delete(self) -> None:
        for old in sorted(self.gone):
            new = self.canon(old)
            kind = kind_of(old)
            for table, column in REFERENCES[kind]:
                self.conn.execute(
                    sa.update(table).where(table.c[column] == old).values({column: new})
                )
            alias = TABLES_ALIAS
            self.conn.execute(sa.update(alias).where(alias.c.target == old).values(target=new))
            obs = TABLES_OBSERVATION
            self.conn.execute(sa.update(obs).where(obs.c.item_id == old).values(item_id=new))
            para = TABLES_PARAGRAPH
            self.conn.execute(sa.delete(para).where(para.c.item_id == old))
            self.new_paragraphs.add(new)
        for old in sorted(self.gone, key=lambda i: kind_of(i) == "comment", reverse=True):
            table = TABLES[kind_of(old)]
            self.conn.execute(sa.delete(table).where(table.c.id == old))

    def _write_aliases(self) -> None:
        """Alias rows for ids that are not (or no longer) an item's own id."""
        names = {n for n in self.new_aliases if self.canon(self.aliases[n]) != n} | self.gone
        rows = [
            {
                "alias": name,
                "kind": kind_of(name),
                "target": self.canon(self.aliases.get(name, name)),
            }
            for name in sorted(names)
        ]
        bulk_insert(self.conn, TABLES_ALIAS, rows, update_on="alias", update=("target",))

    def _write_observations(self) -> None:
        for row in self.observations:
            row["item_id"] = self.canon(row["item_id"])
        bulk_insert(self.conn, TABLES_OBSERVATION, self.observations, ignore_conflicts=True)

    def _write_paragraphs(self) -> None:
        rows: list[Row] = []
        for item_id in sorted({self.canon(i) for i in self.new_paragraphs}):
            row = self.rows.get(item_id)
            if row is None or item_id in self.gone or kind_of(item_id) != "comment":
                continue
            hashes = _hashes(row)
            if not hashes or not needs_fragments(row["body"], low=row.get("confidence") == "low"):
                continue
            rows.extend(
                {"para_hash": h, "kind": "comment", "item_id": item_id} for h in sorted(hashes)
            )
        bulk_insert(self.conn, TABLES_PARAGRAPH, rows, ignore_conflicts=True)


# Every lookup key list travels as ONE parameter (a JSON array on SQLite, an
# array on PostgreSQL), so the statement text never changes and the database
# prepares it once; an IN list of varying length is a new statement each time.
_LOOKUP_PARTS = (
    # An id is known as an item's own id (in its kind's table: the first
    # letter says which), or as an alias of a merged item.
    ("alias", "post", "id", "id", "post_ids"),
    ("alias", "comment", "id", "id", "comment_ids"),
    ("alias", "community", "id", "id", "community_ids"),
    ("alias", "author", "id", "id", "author_ids"),
    ("alias", "alias", "alias", "target", "naturals"),
    ("item", "post", "body_head", "id", "post_heads"),
    ("item", "comment", "body_head", "id", "comment_heads"),
    ("item", "post", "title_key", "id", "titles"),
    ("para", "fragment", "para_hash", "item_id", "paragraphs"),
    ("place", "community", "instance", "id", "instances"),
)
_LOOKUP_BATCH = 2000


def _member(dialect: str, column: str, param: str) -> str:
    if dialect == "postgresql":
        return f"{column} = ANY(CAST(:{param} AS TEXT[]))"
    return f"{column} IN (SELECT value FROM json_each(:{param}))"


@lru_cache(maxsize=4)
def _lookup_text(dialect: str) -> sa.TextClause:
    parts = [
        f"SELECT '{tag}' AS tag, {key} AS key, {value} AS value, "
        f"row_number() OVER (PARTITION BY {key} ORDER BY {value}) AS rank "
        f"FROM {table} WHERE {_member(dialect, key, param)}"
        for tag, table, key, value, param in _LOOKUP_PARTS
    ]
    union = " UNION ALL ".join(parts)
    # More rows per key than CANDIDATES_PER_KEY mark the key as common.
    limit = CANDIDATES_PER_KEY + 1
    return sa.text(f"SELECT tag, key, value, rank FROM ({union}) AS hits WHERE rank <= {limit}")


def _lookup_sql(connection: sa.Connection) -> sa.TextClause:
    return _lookup_text(connection.dialect.name)


@lru_cache(maxsize=16)
def _select_by_id_text(dialect: str, kind: str) -> sa.TextualSelect:
    columns = ", ".join(TABLES[kind].c.keys())
    return sa.text(f"SELECT {columns} FROM {kind} WHERE {_member(dialect, 'id', 'ids')}").columns(
        *TABLES[kind].c
    )


def _select_by_id(connection: sa.Connection, kind: str) -> sa.TextualSelect:
    return _select_by_id_text(connection.dialect.name, kind)


def _arrays(connection: sa.Connection, params: dict[str, list[str]]) -> dict[str, Any]:
    if connection.dialect.name == "postgresql":
        return params
    return {name: json.dumps(values) for name, values in params.items()}


def _lookup_batches(wanted: dict[str, set[str]]) -> Iterable[dict[str, list[str]]]:
    """The keys in statements of at most _LOOKUP_BATCH per parameter.

    Sorted: SQLite builds an index of each key list, and sorted keys cost it
    less than the same keys in set order (callgrind: 40 million instructions
    for 512 files).
    """
    keys = {name: sorted(values) for name, values in wanted.items()}
    longest = max(map(len, keys.values()), default=0)
    for start in range(0, longest, _LOOKUP_BATCH):
        yield {name: values[start : start + _LOOKUP_BATCH] for name, values in keys.items()}


def _heads(observations: Sequence[Copy], kind: str) -> set[str]:
    return {o.row["body_head"] for o in observations if o.kind == kind and o.row["body_head"]}


def _titles(observations: Sequence[Copy]) -> set[str]:
    return {o.row["title_key"] for o in observations if o.kind == "post" and o.row["title_key"]}


def _hashes(row: Row) -> frozenset[str]:
    """The paragraph hashes of a row's body, computed once per body it has had."""
    body = row.get("body")
    if row.get("_hashed", _UNHASHED) is not body:
        row["_paragraphs"], row["_hashed"] = paragraph_hashes(body), body
    return row["_paragraphs"]


_UNHASHED = object()


def _paragraphs(observations: Sequence[Copy]) -> set[str]:
    return set().union(*(o.paragraphs for o in observations)) if observations else set()


def _instances(places: Sequence[ParsedCommunity]) -> set[str]:
    return {c.instance for c in places if c.instance and c.title}


def _chunks(items: Iterable[Any], size: int = _BATCH) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parents_first(rows: list[Row]) -> list[Row]:
    """Order new comments so that a parent is inserted before its replies."""
    by_id = {r["id"]: r for r in rows}
    done: set[str] = set()
    out: list[Row] = []
    for row in rows:
        chain = []
        current: Row | None = row
        while current is not None and current["id"] not in done and current not in chain:
            chain.append(current)
            current = by_id.get(current.get("parent_id") or "")
        for item in reversed(chain):
            done.add(item["id"])
            out.append(item)
    return out
