"""Above the no-password limit the wallet answers "user paying": the host polls with back-off
while the customer confirms with the password, and reverses when nobody does."""
from __future__ import annotations

import pytest

from acquirer.protocol import ResponseCode
from acquirer.wallets import customer_cli
from acquirer.wallets.codes import Wallet
from acquirer.wallets.demo import wallet_world
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, assert_reconciled, run, scanned_code

ABOVE_LIMIT = 30_000  # the worlds' no-password limit is 200.00 CNY


@pytest.mark.parametrize("wallet", list(Wallet))
def test_user_paying_then_password_confirm_approves(wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            url, slept = world.app_url(wallet), []

            async def customer_confirms_while_the_host_waits(seconds):
                slept.append(seconds)
                await world.clock.sleep(seconds)
                if len(slept) == 2:  # the first query still finds it waiting; then the customer types
                    waiting = await customer_cli.pending(url, "alice", PASSWORD)
                    assert [p["amount"] for p in waiting] == [ABOVE_LIMIT]
                    done = await customer_cli.confirm(url, "alice", PASSWORD)
                    assert done["status"] == "SUCCESS"

            world.channel.sleep = customer_confirms_while_the_host_waits
            code = await scanned_code(world, wallet, tmp_path)
            result = await world.channel.pay_customer_code("UP-1", code, ABOVE_LIMIT, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.APPROVED, result
            assert slept == [2.0, 3.0]  # back-off between queries; paid at the second
            assert world.balance(wallet) == 100_000 - ABOVE_LIMIT
            await assert_reconciled(world)
    run(scenario())


@pytest.mark.parametrize("wallet", list(Wallet))
def test_nobody_confirms_so_the_order_is_reversed_at_the_deadline(wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            start = world.clock()
            code = await scanned_code(world, wallet, tmp_path)
            result = await world.channel.pay_customer_code("UP-2", code, ABOVE_LIMIT, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.ISSUER_TIMEOUT
            assert result.state == "REVERSED" and "did not confirm" in result.text
            assert world.clock() - start >= 60  # the whole PollPolicy.total was given
            assert world.wallet_order(result.provider, "UP-2").status.value == "REVERSED"
            assert await customer_cli.pending(world.app_url(wallet), "alice", PASSWORD) == []
            with pytest.raises(customer_cli.WalletAppError) as late:
                await customer_cli.confirm(world.app_url(wallet), "alice", PASSWORD)
            assert late.value.reason == "not_pending"
            assert world.balance(wallet) == 100_000
            again = await world.channel.pay_customer_code("UP-2", code, ABOVE_LIMIT, MERCHANT, TERMINAL)
            assert again.code is ResponseCode.ISSUER_TIMEOUT and again.state == "REVERSED"
            await assert_reconciled(world)
    run(scenario())


def test_three_wrong_passwords_close_the_payment(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            url = world.app_url(Wallet.ALIPAY)

            async def customer_mistypes(seconds):
                await world.clock.sleep(seconds)
                for _ in range(3):
                    with pytest.raises(customer_cli.WalletAppError):
                        await customer_cli.confirm(url, "alice", "wrong")
                world.channel.sleep = world.clock.sleep

            world.channel.sleep = customer_mistypes
            code = await scanned_code(world, Wallet.ALIPAY, tmp_path)
            result = await world.channel.pay_customer_code("UP-3", code, ABOVE_LIMIT, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.DO_NOT_HONOR and result.state == "CLOSED"
            assert world.balance(Wallet.ALIPAY) == 100_000
            await assert_reconciled(world)
    run(scenario())


def test_a_forged_query_answer_while_waiting_is_not_a_payment(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            url = world.app_url(Wallet.WECHAT)
            world.services.faults("wechat-direct").inject("query", "bad_signature", times=2)
            calls = []

            async def confirm_on_third_wait(seconds):
                calls.append(seconds)
                await world.clock.sleep(seconds)
                if len(calls) == 3:
                    await customer_cli.confirm(url, "alice", PASSWORD)

            world.channel.sleep = confirm_on_third_wait
            code = await scanned_code(world, Wallet.WECHAT, tmp_path)
            result = await world.channel.pay_customer_code("UP-4", code, ABOVE_LIMIT, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.APPROVED
            assert world.services.faults("wechat-direct").taken == [("query", "bad_signature")] * 2
            assert world.balance(Wallet.WECHAT) == 100_000 - ABOVE_LIMIT
            await assert_reconciled(world)
    run(scenario())
