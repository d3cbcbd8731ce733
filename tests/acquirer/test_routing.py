"""The routing decision on its own: the priority chain, limits, breaker, manual switch, and
the score rules of case 44, all on a manual clock."""
from __future__ import annotations

import json

from acquirer.wallets.clock import ManualClock, cst_epoch
from acquirer.wallets.codes import Wallet
from acquirer.wallets.routing import ChannelSpec, RouteRequest, Router, RoutingRules
from acquirer.wallets.routing_state import RoutingState, disable, enable
from acquirer.wallets.scoring import AlertKind, BreakerState, CallResult, ScorePolicy

W = Wallet.WECHAT


def wechat_channels(**kw) -> list[ChannelSpec]:
    return [ChannelSpec("wx-a", W, priority=1, **kw), ChannelSpec("wx-b", W, priority=2),
            ChannelSpec("wx-c", W, priority=2), ChannelSpec("wx-d", W, priority=3),
            ChannelSpec("ali-a", Wallet.ALIPAY)]


def test_priority_chain_designated_whitelist_product_channel_pipe():
    rules = RoutingRules(whitelist={"M-VIP": ("wx-b",)}, products={"precreate": ("wx-c",)}, sources={"face": ("wx-d",)})
    router = Router(wechat_channels(), rules, clock=ManualClock(0))

    def route(**kw):
        d = router.choose(RouteRequest("O", W, 100, **{"merchant_id": "M-1", **kw}))
        return d.layer, d.chosen

    assert route(designated="wx-d", merchant_id="M-VIP") == ("designated", "wx-d")
    assert route(merchant_id="M-VIP", product="precreate") == ("whitelist", "wx-b")
    assert route(product="precreate", source="face") == ("product", "wx-c")
    assert route(source="face") == ("channel", "wx-d")
    assert route() == ("pipe", "wx-a")  # best priority of the wallet's channels
    assert route(designated="ali-a") == ("pipe", "wx-a")  # a designation for another wallet is skipped
    decision = router.decisions[-1]
    assert decision.verdicts[0].reason == "reaches alipay, not wechat"
    assert json.loads(json.dumps(decision.record()))["chosen"] == "wx-a"  # one structured, loggable record


def test_an_unusable_layer_falls_through_with_its_reasons():
    router = Router(wechat_channels(), RoutingRules(whitelist={"M-VIP": ("wx-b",)}), clock=ManualClock(0))
    router.disable("wx-b", "maintenance")
    d = router.choose(RouteRequest("O", W, 100, "M-VIP"))
    assert (d.layer, d.chosen) == ("pipe", "wx-a")
    assert d.verdicts[0].layer == "whitelist" and d.verdicts[0].reason == "disabled by operator: maintenance"


def test_limits_per_transaction_daily_and_monthly():
    clock = ManualClock(cst_epoch("2025-06-30 10:00:00"))
    router = Router([ChannelSpec("wx-a", W, per_txn_max=5_000, daily_max=8_000, monthly_max=12_000),
                     ChannelSpec("wx-b", W, priority=2)], clock=clock)
    assert router.choose(RouteRequest("1", W, 6_000)).chosen == "wx-b"  # over the per-transaction limit
    assert router.choose(RouteRequest("2", W, 5_000)).chosen == "wx-a"
    router.count_payment("wx-a", 5_000)
    d = router.choose(RouteRequest("3", W, 4_000))
    assert d.chosen == "wx-b" and "daily limit: 5000 used + 4000 > 8000" in d.verdicts[0].reason
    clock.advance(86_400)  # 1 July: a new day and a new month
    assert router.choose(RouteRequest("4", W, 4_000)).chosen == "wx-a"
    router.count_payment("wx-a", 4_000)
    clock.advance(86_400)
    router.count_payment("wx-a", 4_000)
    clock.advance(86_400)
    d = router.choose(RouteRequest("5", W, 4_001))
    assert d.chosen == "wx-b" and "monthly limit: 8000 used + 4001 > 12000" in d.verdicts[0].reason


def test_all_channels_over_their_limits_is_its_own_outcome():
    router = Router([ChannelSpec("wx-a", W, per_txn_max=100)], clock=ManualClock(0))
    assert router.choose(RouteRequest("1", W, 101)).outcome == "over_limit"
    router.disable("wx-a")
    assert router.choose(RouteRequest("2", W, 50)).outcome == "no_usable_channel"


def test_circuit_breaker_opens_half_opens_and_closes():
    clock = ManualClock(0)
    router = Router([ChannelSpec("wx-a", W), ChannelSpec("wx-b", W, priority=2)], clock=clock,
                    policy=ScorePolicy(min_samples=1000))  # scores out of the way: the breaker alone
    health = router.health["wx-a"]
    for _ in range(5):
        router.record("wx-a", CallResult.FAILED)
    assert health.breaker is BreakerState.OPEN
    d = router.choose(RouteRequest("1", W, 1))
    assert d.chosen == "wx-b" and d.verdicts[0].reason == "circuit breaker open"
    clock.advance(30)
    assert health.breaker is BreakerState.HALF_OPEN and router.choose(RouteRequest("2", W, 1)).chosen == "wx-a"
    router.record("wx-a", CallResult.FAILED)  # the trial failed: open again
    assert health.breaker is BreakerState.OPEN
    clock.advance(30)
    router.record("wx-a", CallResult.OK)
    assert health.breaker is BreakerState.CLOSED and router.score("wx-a") == 100


def test_manual_switch_from_another_process_takes_effect_on_the_next_decision(tmp_path):
    path = tmp_path / "routing.db"
    router = Router([ChannelSpec("wx-a", W), ChannelSpec("wx-b", W, priority=2)], clock=ManualClock(0),
                    state=RoutingState(path))
    assert router.choose(RouteRequest("1", W, 1)).chosen == "wx-a"
    disable(path, "wx-a", "provider incident", actor="ops")  # what `acquirer channel disable` runs
    assert router.choose(RouteRequest("2", W, 1)).chosen == "wx-b"
    enable(path, "wx-a", actor="ops")
    assert router.choose(RouteRequest("3", W, 1)).chosen == "wx-a"
    log = [(c, a, r, who) for _, c, a, r, who, _ in RoutingState(path).switch_log()]
    assert log == [("wx-a", "disable", "provider incident", "ops"), ("wx-a", "enable", "", "ops")]


def test_score_rules_penalties_threshold_and_stepwise_recovery():
    clock = ManualClock(0)
    router = Router([ChannelSpec("wx-a", W), ChannelSpec("wx-b", W, priority=2)], clock=clock,
                    policy=ScorePolicy(min_samples=10, timeouts_for_alert=3))
    for kind in (AlertKind.SUCCESS_RATE, AlertKind.TIMEOUT, AlertKind.SUCCESS_RATE):
        router.alert("wx-a", kind)
    for _ in range(3):
        router.record("wx-a", CallResult.TIMEOUT)  # three timeouts in the window: one timeout alert
    assert router.score("wx-a") == 40
    d = router.choose(RouteRequest("1", W, 1))
    assert d.chosen == "wx-b" and d.verdicts[0].reason == "score 40 below 50"
    clock.advance(299)
    assert router.score("wx-a") == 40  # not quiet long enough
    clock.advance(1)
    assert router.score("wx-a") == 50 and router.choose(RouteRequest("2", W, 1)).chosen == "wx-a"
    clock.advance(3000)
    assert router.score("wx-a") == 100
    assert [p.score for p in router.health["wx-a"].trajectory] == [100, 80, 70, 50, 40, 50, 60, 70, 80, 90, 100]


def test_equal_priorities_share_traffic_in_proportion_to_their_scores():
    router = Router([ChannelSpec("wx-a", W), ChannelSpec("wx-b", W)], clock=ManualClock(0))
    for kind in (AlertKind.SUCCESS_RATE, AlertKind.SUCCESS_RATE, AlertKind.TIMEOUT):
        router.alert("wx-b", kind)  # 100 - 20 - 20 - 10 = 50
    chosen = [router.choose(RouteRequest(str(n), W, 1)).chosen for n in range(30)]
    assert chosen.count("wx-a") == 20 and chosen.count("wx-b") == 10
