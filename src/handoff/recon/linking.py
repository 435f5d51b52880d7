"""Who is who across the exports: ERP customers, loyalty members, CRM contacts, destinations.

The loyalty platform's member ids and the CRM's contact ids are not the ERP's. Links, strongest
first:

1. ids the systems share: a member's `customer_id` (when the platform stores the ERP's id), a
   POS customer whose id is a member id (loyalty apps keyed by the POS customer id);
2. the identity engine (`handoff.domain.identity.resolve_batch`: normalised email and phone,
   placeholder and shared-value guards, household conflicts, then Fellegi–Sunter on names, postcode
   and the rest) over one profile per record of every system — the same rules as the live
   pipeline. Its clusters are the *people*;
3. the loyalty platform's own evidence: a member that earned a customer's orders and is linked
   to nobody else is that customer's member.

Above `engine_limit` records (the benchmark's millions) the engine's Python scorer is too slow
for a run of seconds, and step 2 becomes its deterministic tier alone, set-based in DuckDB:
exact trimmed, case-folded email (placeholders excluded) with the same first name, or the same
last ten phone digits with the same first name. docs/reconciliation.md says what that misses.

Tables written (all keyed by the systems' own ids, as text):
`link_person(system, id, person)` every record's person; `cust_member(customer_id, member_id,
member_created_at, how)` each customer's member; `contact_shared(contact_id)` contacts whose
exact email is used by customers of several people.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

import duckdb

from handoff.domain.identity import (
    DEFAULT_GUARDS,
    GuardConfig,
    NormalizeConfig,
    Profile,
    default_model,
    resolve_batch,
)
from handoff.recon.inputs import DESTINATIONS, Loaded

SYSTEM_OF_TABLE = {
    "loyalty_members": "loyalty",
    "crm_contacts": "crm",
    **DESTINATIONS,
}
ID_OF_TABLE = {"loyalty_members": "member_id", "crm_contacts": "contact_id"}
REGION_OF_CURRENCY = {
    "USD": "US",
    "CAD": "CA",
    "AUD": "AU",
    "NZD": "NZ",
    "GBP": "GB",
    "JPY": "JP",
    "CHF": "CH",
    "SEK": "SE",
    "NOK": "NO",
    "DKK": "DK",
}


@dataclass(frozen=True)
class LinkOptions:
    mode: str = "auto"  # auto | engine | exact
    engine_limit: int = 200_000
    phone_region: str | None = None
    allow_email_domains: tuple[str, ...] = ()

    def guards(self) -> GuardConfig:
        if not self.allow_email_domains:
            return DEFAULT_GUARDS
        allowed = {d.lower() for d in self.allow_email_domains}
        return replace(
            DEFAULT_GUARDS,
            placeholder_email_domains=frozenset(
                d for d in DEFAULT_GUARDS.placeholder_email_domains if d not in allowed
            ),
        )


@dataclass
class LinkReport:
    mode: str
    records: int
    people: int
    members_linked: int
    contacts_linked: int
    review_pairs: int = 0


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def _profile_sql(loaded: Loaded, *, destinations: bool = True) -> str:
    """One row per record of every identity-bearing table: system, id, profile fields.

    Destination records (POS, helpdesk, email) carry no names in most exports: as free
    profiles they would bridge two people who share an email and phone (a household), so
    the engine builds people from the ERP, loyalty and CRM records only, and destination
    records are attached afterwards (`_attach_destinations`)."""
    parts = [
        "SELECT 'erp' AS system, customer_id AS id, email, phone, first_name, last_name, zip "
        "FROM erp_cust"
    ]
    for table, system in SYSTEM_OF_TABLE.items():
        if not loaded.has(table) or (not destinations and table in DESTINATIONS):
            continue
        key = ID_OF_TABLE.get(table, "id")
        zip_col = "zip" if table in ("loyalty_members", "crm_contacts") else "NULL"
        parts.append(
            f"SELECT '{system}', {key}, email, phone, first_name, last_name, {zip_col} FROM {table}"
        )
    return " UNION ALL ".join(parts)


def link(
    con: duckdb.DuckDBPyConnection, loaded: Loaded, options: LinkOptions, currency: str
) -> LinkReport:
    _erp_customers(con)
    _keys(con, loaded, options)
    records = con.execute("SELECT count(*) FROM link_keys").fetchone()
    total = int(records[0]) if records else 0
    for table in DESTINATIONS:
        total += loaded.tables.get(table, 0)
    mode = options.mode
    if mode == "auto":
        mode = "engine" if total <= options.engine_limit else "exact"
    if mode == "engine":
        report = _link_engine(con, loaded, options, currency, total)
    else:
        report = _link_exact(con, loaded, options, total)
    _attach_destinations(con, loaded, options)
    _merge_bridged(con)
    _customer_members(con, loaded)
    _shared_contacts(con, loaded)
    people = con.execute("SELECT count(DISTINCT person) FROM link_person").fetchone()
    report.people = int(people[0]) if people else 0
    linked = con.execute("SELECT count(*) FROM cust_member").fetchone()
    report.members_linked = int(linked[0]) if linked else 0
    if loaded.has("crm_contacts"):
        contacts = con.execute(
            "SELECT count(*) FROM crm_contacts c JOIN link_person l ON l.system = 'crm' AND "
            "l.id = c.contact_id WHERE l.person IN (SELECT person FROM link_person WHERE system = 'erp')"
        ).fetchone()
        report.contacts_linked = int(contacts[0]) if contacts else 0
    return report


def _erp_customers(con: duckdb.DuckDBPyConnection) -> None:
    """One row per ERP customer, computed once: its profile (the latest value of each field),
    its first order and that order's channel."""
    con.execute(
        """
        CREATE OR REPLACE TABLE erp_cust AS
        SELECT customer_id,
               arg_max(email, placed_at) FILTER (WHERE email IS NOT NULL) AS email,
               arg_max(phone, placed_at) FILTER (WHERE phone IS NOT NULL) AS phone,
               arg_max(first_name, placed_at) FILTER (WHERE first_name IS NOT NULL) AS first_name,
               arg_max(last_name, placed_at) FILTER (WHERE last_name IS NOT NULL) AS last_name,
               arg_max(zip, placed_at) FILTER (WHERE zip IS NOT NULL) AS zip,
               min(placed_at) AS first_at, arg_min(channel, placed_at) AS channel
        FROM orders GROUP BY customer_id
        """
    )


def _keys(con: duckdb.DuckDBPyConnection, loaded: Loaded, options: LinkOptions) -> None:
    """Every ERP customer, member and contact with its normalised keys, computed once."""
    domains = options.guards().placeholder_email_domains
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE link_keys AS
        SELECT system, CAST(id AS VARCHAR) AS id, email, phone, first_name, last_name, zip,
               {_norm_email_sql("email", domains)} AS em,
               {norm_phone_sql("phone")} AS ph,
               {_first_name_sql("first_name")} AS fn, {_first_name_sql("last_name")} AS ln
        FROM ({_profile_sql(loaded, destinations=False)})
        """
    )


def _direct_links(
    con: duckdb.DuckDBPyConnection, loaded: Loaded
) -> list[tuple[str, str, str, str]]:
    """(system a, id a, system b, id b) pairs the systems' own ids establish."""
    out: list[tuple[str, str, str, str]] = []
    if loaded.has("loyalty_members", "customer_id"):
        out += [
            ("loyalty", m, "erp", c)
            for m, c in con.execute(
                "SELECT m.member_id, m.customer_id FROM loyalty_members m "
                "WHERE m.customer_id IN (SELECT customer_id FROM erp_cust)"
            ).fetchall()
        ]
    return out


def _link_engine(
    con: duckdb.DuckDBPyConnection,
    loaded: Loaded,
    options: LinkOptions,
    currency: str,
    total: int,
) -> LinkReport:
    rows = con.execute(
        "SELECT system, id, email, phone, first_name, last_name, zip FROM link_keys"
    ).fetchall()
    region = options.phone_region or REGION_OF_CURRENCY.get(currency)

    def profiles() -> Iterable[Profile]:
        for system, ident, email, phone, first, last, zip_ in rows:
            yield Profile(
                record_id=f"{system}|{ident}",
                system=system,
                external_id=str(ident),
                email=email,
                phone=phone,
                first_name=first,
                last_name=last,
                zip=zip_,
            )

    result = resolve_batch(
        profiles(),
        default_model(),
        guards=options.guards(),
        normalize_config=NormalizeConfig(default_region=region),
        term_frequencies=True,  # a reconciliation links whole exports, however small
    )
    uf = _UnionFind()
    for decision in result.decisions:
        uf.union(decision.record_id, decision.customer_id or decision.record_id)
    for sa, ia, sb, ib in _direct_links(con, loaded):
        uf.union(f"{sa}|{ia}", f"{sb}|{ib}")
    table = []
    for system, ident, *_ in rows:
        table.append((system, str(ident), uf.find(f"{system}|{ident}")))
    con.execute("CREATE OR REPLACE TABLE link_person (system VARCHAR, id VARCHAR, person VARCHAR)")
    if table:
        con.executemany("INSERT INTO link_person VALUES (?, ?, ?)", table)
    # probable matches (between the thresholds, or vetoed as two people): not one person, but
    # enough to say a customer is not without a CRM contact
    con.execute("CREATE OR REPLACE TABLE link_review (a VARCHAR, b VARCHAR, score DOUBLE)")
    pairs = [(r.record_a, r.record_b, r.score) for r in result.reviews]
    if pairs:
        con.executemany("INSERT INTO link_review VALUES (?, ?, ?)", pairs)
    return LinkReport("engine", total, 0, 0, 0, len(result.reviews))


_PLACEHOLDER_LOCALS = ("test", "noemail", "none", "no", "na", "email", "donotreply", "noreply")


def _norm_email_sql(col: str, domains: Iterable[str]) -> str:
    listed = ", ".join("'" + d.replace("'", "''") + "'" for d in domains)
    locals_ = ", ".join(f"'{x}'" for x in _PLACEHOLDER_LOCALS)
    e = f"lower(trim({col}))"
    return (
        f"CASE WHEN {col} IS NULL OR position('@' IN {col}) = 0 THEN NULL "
        f"WHEN split_part({e}, '@', 2) IN ({listed}) THEN NULL "
        f"WHEN split_part({e}, '@', 1) IN ({locals_}) THEN NULL ELSE {e} END"
    )


def norm_phone_sql(col: str) -> str:
    digits = f"regexp_replace(coalesce({col}, ''), '[^0-9]', '', 'g')"
    tail = f"right({digits}, 10)"
    return (
        f"CASE WHEN length({digits}) < 10 THEN NULL "
        f"WHEN length(list_distinct(string_split(right({tail}, 7), ''))) = 1 THEN NULL "
        f"ELSE {tail} END"
    )


def _link_exact(
    con: duckdb.DuckDBPyConnection, loaded: Loaded, options: LinkOptions, total: int
) -> LinkReport:
    """The deterministic tier in SQL: same email or same phone, with the same first name."""
    con.execute("CREATE OR REPLACE TABLE link_review (a VARCHAR, b VARCHAR, score DOUBLE)")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE link_rec AS "
        "SELECT system, id, system || '|' || id AS rec, em, ph, "
        "coalesce(fn, '') AS fn FROM link_keys"
    )
    # one pass, no transitive closure: a member belongs to its `customer_id` (or to the customer
    # with its email and first name), a contact to the customer with its email and first name
    # (else its phone); customers are people of their own. Splits and households are the
    # engine's job (`--identity engine`).
    has_cid = loaded.has("loyalty_members", "customer_id")
    member_cid = "customer_id" if has_cid else "NULL::VARCHAR"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE link_person AS
        WITH cust AS (SELECT id, em, ph, fn, rec FROM link_rec WHERE system = 'erp'),
        by_em AS (SELECT em, fn, min(rec) AS rec FROM cust WHERE em IS NOT NULL GROUP BY 1, 2),
        by_ph AS (SELECT ph, fn, min(rec) AS rec FROM cust WHERE ph IS NOT NULL GROUP BY 1, 2),
        known AS (SELECT customer_id FROM erp_cust)
        SELECT 'erp' AS system, id, rec AS person FROM cust
        UNION ALL
        SELECT r.system, r.id, coalesce(r.direct, e.rec, p.rec, r.rec)
        FROM (
            SELECT l.*, 'erp|' || k.customer_id AS direct
            FROM (SELECT * FROM link_rec WHERE system = 'loyalty') l
            LEFT JOIN (SELECT member_id, {member_cid} AS customer_id FROM loyalty_members) m
                   ON m.member_id = l.id
            LEFT JOIN known k ON k.customer_id = m.customer_id
            UNION ALL
            SELECT *, NULL::VARCHAR FROM link_rec WHERE system NOT IN ('erp', 'loyalty')
        ) r
        LEFT JOIN by_em e ON e.em = r.em AND e.fn = r.fn
        LEFT JOIN by_ph p ON p.ph = r.ph AND p.fn = r.fn
        """
    )
    return LinkReport("exact", total, 0, 0, 0)


def _attach_destinations(
    con: duckdb.DuckDBPyConnection, loaded: Loaded, options: LinkOptions
) -> None:
    """Attach each destination record (POS, helpdesk, email) to its people.

    A POS customer is one ERP customer: its id when it is a member id, else the customer with
    its exact email (else phone) that holds no POS record yet — a household partner sharing
    the address already has their own. Helpdesk users and email profiles are keyed by email:
    the people with that email, and the people with no usable email who share its phone (a
    placeholder address hides the real one); a name on the record narrows the candidates to
    the same first name. A record that still matches several people is shared by them."""
    domains = options.guards().placeholder_email_domains
    con.execute(
        "CREATE OR REPLACE TEMP TABLE link_keyed AS SELECT l.person, k.system, k.id, k.em, "
        "k.ph, k.fn, k.ln FROM link_person l JOIN link_keys k USING (system, id)"
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE link_keyed_person AS
        SELECT person, bool_or(em IS NOT NULL) AS has_email FROM link_keyed GROUP BY 1
        """
    )
    for table, system in DESTINATIONS.items():
        con.execute(f"DELETE FROM link_person WHERE system = '{system}'")
        if not loaded.has(table):
            continue
        name = "coalesce(first_name, split_part(trim(name), ' ', 1))"
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE link_dest AS
            SELECT id, {_norm_email_sql("email", domains)} AS em,
                   {norm_phone_sql("phone")} AS ph, {_first_name_sql(name)} AS fn
            FROM {table}
            """
        )
        direct = "SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS person WHERE false"
        customer_level = direct
        if system == "pos" and loaded.has("loyalty_members"):
            direct = (
                "SELECT d.id, l.person FROM link_dest d JOIN link_person l "
                "ON l.system = 'loyalty' AND l.id = d.id"
            )
            taken = (
                "SELECT m.customer_id FROM loyalty_members m JOIN link_dest d "
                "ON d.id = m.member_id WHERE m.customer_id IS NOT NULL"
                if loaded.has("loyalty_members", "customer_id")
                else "SELECT NULL::VARCHAR AS customer_id WHERE false"
            )
            customer_level = f"""
                WITH free AS (
                    SELECT k.* FROM link_keyed k WHERE k.system = 'erp'
                      AND k.id NOT IN ({taken})
                ),
                open AS (SELECT * FROM link_dest WHERE id NOT IN (SELECT id FROM ({direct}))),
                e AS (SELECT DISTINCT o.id, f.person FROM open o JOIN free f ON f.em = o.em),
                p AS (
                    SELECT DISTINCT o.id, f.person FROM open o JOIN free f ON f.ph = o.ph
                    WHERE o.id NOT IN (SELECT id FROM e)
                )
                SELECT * FROM e UNION ALL SELECT * FROM p
            """
        con.execute(
            f"""
            INSERT INTO link_person
            WITH direct AS ({direct} UNION SELECT * FROM ({customer_level})),
            open AS (SELECT * FROM link_dest WHERE id NOT IN (SELECT id FROM direct)),
            by_email AS (
                SELECT DISTINCT o.id, k.person, o.fn = k.fn AS same_name
                FROM open o JOIN link_keyed k ON k.em = o.em
                UNION
                SELECT DISTINCT o.id, k.person, o.fn = k.fn
                FROM open o JOIN link_keyed k ON k.ph = o.ph
                JOIN link_keyed_person kp ON kp.person = k.person AND NOT kp.has_email
                WHERE o.em IS NOT NULL
            ),
            by_phone AS (
                SELECT DISTINCT o.id, k.person, o.fn = k.fn AS same_name
                FROM open o JOIN link_keyed k ON k.ph = o.ph
                WHERE o.id NOT IN (SELECT id FROM by_email)
            ),
            cand AS (SELECT * FROM by_email UNION ALL SELECT * FROM by_phone),
            -- a name on the record keeps only the candidates with its first name
            named AS (SELECT id FROM cand GROUP BY 1 HAVING bool_or(coalesce(same_name, false))),
            found AS (
                SELECT id, person FROM direct
                UNION
                SELECT id, person FROM cand
                WHERE id NOT IN (SELECT id FROM named) OR coalesce(same_name, false)
            )
            SELECT '{system}', d.id, coalesce(f.person, '{system}|' || d.id)
            FROM link_dest d LEFT JOIN found f USING (id)
            """
        )


def _merge_bridged(con: duckdb.DuckDBPyConnection) -> None:
    """One person split in two (a placeholder email on one record, no phone on the other) is
    bridged by a destination record carrying both the email and the phone: people sharing a
    destination record and the same first and last name are one. A household shares the
    record too, but not the first name."""
    pairs = con.execute(
        f"""
        WITH dp AS (
            SELECT system, id, person FROM link_person
            WHERE system IN ({", ".join(f"'{s}'" for s in DESTINATIONS.values())})
        ),
        names AS (
            SELECT DISTINCT person, fn, ln FROM link_keyed WHERE fn IS NOT NULL AND ln IS NOT NULL
        )
        SELECT DISTINCT a.person, b.person FROM dp a
        JOIN dp b ON a.system = b.system AND a.id = b.id AND a.person < b.person
        JOIN names na ON na.person = a.person
        JOIN names nb ON nb.person = b.person AND nb.fn = na.fn AND nb.ln = na.ln
        """
    ).fetchall()
    if not pairs:
        return
    uf = _UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    mapping = [(x, uf.find(x)) for x in list(uf.parent) if uf.find(x) != x]
    con.execute("CREATE OR REPLACE TEMP TABLE link_merge (person VARCHAR, into_ VARCHAR)")
    con.executemany("INSERT INTO link_merge VALUES (?, ?)", mapping)
    con.execute(
        "UPDATE link_person SET person = m.into_ FROM link_merge m "
        "WHERE link_person.person = m.person"
    )
    # a record attached to both halves is now listed twice
    con.execute(
        "CREATE OR REPLACE TABLE link_person AS SELECT DISTINCT system, id, person FROM link_person"
    )


def _first_name_sql(col: str) -> str:
    return f"NULLIF(lower(regexp_replace(coalesce({col}, ''), '[^A-Za-z]', '', 'g')), '')"


def _customer_members(con: duckdb.DuckDBPyConnection, loaded: Loaded) -> None:
    """Each ERP customer's loyalty member: the platform's own customer id, else the member of
    the same person that earned the customer's orders (or the only one), else event evidence."""
    created = "m.created_at" if loaded.has("loyalty_members", "created_at") else "NULL"
    if not loaded.has("loyalty_members") and not loaded.has("loyalty_events"):
        con.execute(
            "CREATE OR REPLACE TABLE cust_member (customer_id VARCHAR, member_id VARCHAR, "
            "member_created_at TIMESTAMPTZ, how VARCHAR)"
        )
        return
    members = (
        "SELECT member_id, customer_id, created_at FROM loyalty_members"
        if loaded.has("loyalty_members")
        else "SELECT DISTINCT member_id, NULL::VARCHAR AS customer_id, "
        "NULL::TIMESTAMPTZ AS created_at FROM loyalty_events"
    )
    evidence = (
        "SELECT o.customer_id, e.member_id, count(*) AS n FROM loyalty_events e "
        "JOIN orders o ON o.order_id = e.order_id WHERE e.kind = 'earn' GROUP BY 1, 2"
        if loaded.has("loyalty_events")
        else "SELECT NULL::VARCHAR AS customer_id, NULL::VARCHAR AS member_id, 0 AS n WHERE false"
    )
    del created
    con.execute(
        f"""
        CREATE OR REPLACE TABLE cust_member AS
        WITH mem AS ({members}),
        cust AS (SELECT customer_id FROM erp_cust),
        direct AS (
            SELECT m.customer_id, arg_min(m.member_id, (m.created_at, m.member_id)) AS member_id
            FROM mem m JOIN cust c USING (customer_id) GROUP BY 1
        ),
        claimed AS (SELECT member_id FROM mem WHERE customer_id IN (SELECT customer_id FROM cust)),
        ev AS ({evidence}),
        same_person AS (
            SELECT lc.id AS customer_id, m.member_id,
                   coalesce(ev.n, 0) AS n
            FROM link_person lc
            JOIN link_person lm ON lm.person = lc.person AND lm.system = 'loyalty'
            JOIN mem m ON m.member_id = lm.id
            LEFT JOIN ev ON ev.customer_id = lc.id AND ev.member_id = m.member_id
            WHERE lc.system = 'erp' AND m.member_id NOT IN (SELECT member_id FROM claimed)
        ),
        by_person AS (
            SELECT customer_id, arg_max(member_id, (n, member_id)) AS member_id
            FROM same_person GROUP BY 1
        ),
        by_events AS (
            SELECT ev.customer_id, arg_max(ev.member_id, (ev.n, ev.member_id)) AS member_id
            FROM ev WHERE ev.member_id NOT IN (SELECT member_id FROM claimed) GROUP BY 1
        ),
        chosen AS (
            SELECT c.customer_id,
                   coalesce(d.member_id, p.member_id, e.member_id) AS member_id,
                   CASE WHEN d.member_id IS NOT NULL THEN 'customer_id'
                        WHEN p.member_id IS NOT NULL THEN 'identity'
                        WHEN e.member_id IS NOT NULL THEN 'events' END AS how
            FROM cust c LEFT JOIN direct d USING (customer_id)
            LEFT JOIN by_person p USING (customer_id) LEFT JOIN by_events e USING (customer_id)
        )
        SELECT ch.customer_id, ch.member_id, m.created_at AS member_created_at, ch.how
        FROM chosen ch LEFT JOIN mem m USING (member_id)
        WHERE ch.member_id IS NOT NULL
        """
    )


def _shared_contacts(con: duckdb.DuckDBPyConnection, loaded: Loaded) -> None:
    """Contacts whose exact email belongs to customers of more than one person."""
    con.execute("CREATE OR REPLACE TABLE contact_shared (contact_id VARCHAR, people BIGINT)")
    con.execute(
        "CREATE OR REPLACE TABLE contact_email_cust (contact_id VARCHAR, customer_id VARCHAR)"
    )
    if not loaded.has("crm_contacts"):
        return
    con.execute(
        """
        CREATE OR REPLACE TABLE contact_email_cust AS
        WITH ce AS (
            SELECT customer_id, lower(trim(email)) AS em FROM erp_cust WHERE email IS NOT NULL
        )
        SELECT c.contact_id, ce.customer_id FROM crm_contacts c
        JOIN ce ON ce.em = lower(trim(c.email))
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE contact_shared AS
        SELECT x.contact_id, count(DISTINCT l.person) AS people
        FROM contact_email_cust x JOIN link_person l ON l.system = 'erp' AND l.id = x.customer_id
        GROUP BY 1 HAVING count(DISTINCT l.person) > 1
        """
    )


def people_of(con: duckdb.DuckDBPyConnection, system: str, ident: str) -> list[str]:
    rows = con.execute(
        "SELECT person FROM link_person WHERE system = ? AND id = ?", [system, ident]
    ).fetchall()
    return [r[0] for r in rows]


def group_by_person(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for system, ident, person in con.execute(
        "SELECT system, id, person FROM link_person"
    ).fetchall():
        out[person].append((system, ident))
    return out
