"""One provider fails: routing moves the wallet's traffic to the other route within the
scoring rules, and gives it back step by step once the provider is healthy and quiet."""
from __future__ import annotations

from acquirer.protocol import ResponseCode
from acquirer.wallets.codes import Wallet
from acquirer.wallets.demo import wallet_world
from acquirer.wallets.scoring import ScorePolicy
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, assert_reconciled, run

# a success-rate verdict every 3 payments on a channel; the breaker kept out of the way so
# the score alone steers (the breaker has its own test)
POLICY = ScorePolicy(min_samples=3, success_threshold=0.9, window=3600, quiet_period=300, breaker_failures=1000)
A, B = "alipay-direct", "alipay-isv"


def test_failing_provider_loses_traffic_and_recovers_step_by_step(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD, policy=POLICY) as world:
            router, score_a = world.router, lambda: world.router.score(A)
            n = 0

            async def pay() -> tuple[str, ResponseCode]:
                nonlocal n
                n += 1
                code = await world.customer_code(Wallet.ALIPAY)
                result = await world.channel.pay_customer_code(f"RT-{n}", code, 100, MERCHANT, TERMINAL)
                return result.provider, result.code

            world.services.faults(A).always("pay", "system_error")
            phase1 = [await pay() for _ in range(24)]
            assert all(code is ResponseCode.APPROVED for p, code in phase1 if p == B)
            assert all(code is ResponseCode.SYSTEM_ERROR for p, code in phase1 if p == A)  # reversed, not charged
            on_a = [i for i, (p, _) in enumerate(phase1) if p == A]
            assert len(on_a) == 9 and score_a() == 40  # three alerts of -20, then no more traffic
            assert on_a[-1] < 20 and {p for p, _ in phase1[on_a[-1] + 1:]} == {B}
            last = router.decisions[-1]
            assert [(v.channel, v.usable, v.reason) for v in last.verdicts if v.channel == A] == \
                [(A, False, "score 40 below 50")]

            world.services.faults(A).heal()  # the provider is fixed; nobody tells the router
            world.clock.advance(299)
            assert {(await pay())[0] for _ in range(3)} == {B}  # not quiet long enough yet
            world.clock.advance(1)
            assert score_a() == 50  # usable again, at half weight
            phase2 = [await pay() for _ in range(6)]
            assert [p for p, _ in phase2].count(A) == 2 and all(c is ResponseCode.APPROVED for _, c in phase2)
            for _ in range(5):
                world.clock.advance(300)
                assert score_a() <= 100
            phase3 = [await pay() for _ in range(6)]
            assert [p for p, _ in phase3].count(A) == 3  # full score: an equal share again

            trajectory = [(p.score, p.why) for p in router.health[A].trajectory]
            assert [s for s, _ in trajectory] == [100, 80, 60, 40, 50, 60, 70, 80, 90, 100]
            assert trajectory[1][1] == "success_rate alert" and trajectory[4][1] == "quiet: recovered"
            assert [p.score for p in router.health[B].trajectory] == [100]
            approved = sum(1 for _, c in phase1 + phase2 + phase3 if c is ResponseCode.APPROVED) + 3
            assert world.balance(Wallet.ALIPAY) == 100_000 - 100 * approved
            await assert_reconciled(world)
    run(scenario())
