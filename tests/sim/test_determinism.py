"""The same seed gives byte-identical ground truth and exports; another seed does not."""

from __future__ import annotations

from pathlib import Path

from handoff.sim.scenario_config import FaultWindow
from handoff.sim.stack import Simulation
from tests.sim.conftest import small


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_byte_identical(tmp_path: Path) -> None:
    config = small(customers=35, seed=21)
    config = config.model_copy(
        update={
            "faults": config.faults.model_copy(
                update={
                    "windows": (
                        FaultWindow(
                            target="webhooks:erp",
                            kind="errors",
                            start_hours=48,
                            duration_hours=3,
                            rate=0.5,
                        ),
                    )
                }
            )
        }
    )
    Simulation.build(config).write(tmp_path / "a")
    Simulation.build(config).write(tmp_path / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b
    assert set(a) >= {
        "truth/people.csv",
        "truth/identities.csv",
        "truth/expected_people.csv",
        "truth/expected_customers.csv",
        "truth/expected_ledger.csv",
        "truth/faults.csv",
        "truth/faults.jsonl",
        "truth/deliveries.csv",
        "truth/summary.json",
        "exports/orders.csv",
        "exports/refunds.csv",
        "exports/loyalty_events.csv",
        "exports/loyalty_members.csv",
        "exports/crm_contacts.csv",
        "exports/pos_customers.csv",
        "exports/helpdesk_users.csv",
        "exports/comms_profiles.csv",
    }
    Simulation.build(config.with_seed(22)).write(tmp_path / "c")
    c = _tree(tmp_path / "c")
    assert c["exports/orders.csv"] != a["exports/orders.csv"]
    assert c["truth/faults.csv"] != a["truth/faults.csv"]


def test_exports_follow_reconcile_md(tmp_path: Path) -> None:
    Simulation.build(small(customers=15)).write(tmp_path)
    heads = {
        "orders.csv": {"order_id", "customer_id", "currency", "subtotal", "status", "placed_at"},
        "refunds.csv": {"refund_id", "order_id", "refunded_at", "amount"},
        "loyalty_events.csv": {"event_id", "member_id", "kind", "points", "occurred_at"},
        "loyalty_members.csv": {"member_id", "points_balance"},
        "crm_contacts.csv": {"contact_id", "email", "is_vip", "tier", "points_balance"},
        "pos_customers.csv": {"id", "email", "phone", "is_vip"},
        "helpdesk_users.csv": {"id", "email", "is_vip"},
        "comms_profiles.csv": {"id", "email", "is_vip"},
    }
    for name, required in heads.items():
        header = (tmp_path / "exports" / name).read_text().splitlines()[0].split(",")
        assert required <= set(header), name
    orders = (tmp_path / "exports" / "orders.csv").read_text().splitlines()[1:]
    statuses = {line.split(",")[16] for line in orders}
    assert statuses <= {"placed", "paid", "fulfilled", "cancelled"}
    assert all("T" in line and "Z" in line for line in orders)
