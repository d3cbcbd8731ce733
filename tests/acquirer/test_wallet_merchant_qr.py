"""Merchant-displayed dynamic QR: precreate, render, the customer scans and pays, the wallet
notifies the host (signed, SM4-GCM for WeChat), or the host finds out by query; refunds."""
from __future__ import annotations

import asyncio

import pytest

from acquirer.channels.qr import PollPolicy
from acquirer.protocol import ResponseCode
from acquirer.wallets import customer_cli
from acquirer.wallets.adapter import NotifyAck
from acquirer.wallets.codes import Wallet, wallet_of_merchant_qr
from acquirer.wallets.customer_cli import pay_merchant_qr, render_png
from acquirer.wallets.demo import wallet_world
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, assert_reconciled, run


@pytest.mark.parametrize("wallet", list(Wallet))
def test_merchant_qr_png_is_paid_with_the_customer_cli_and_notified(wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            made = await world.channel.precreate("MQ-1", 2_580, MERCHANT, TERMINAL, wallet, description="noodles")
            assert made.code is ResponseCode.APPROVED and made.state == "WAITING"
            assert wallet_of_merchant_qr(made.code_url) is wallet
            png = render_png(made.code_url, tmp_path / "merchant.png")
            paid = await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, str(png))
            assert (paid["wallet"], paid["amount"], paid["status"]) == (wallet.value, 2_580, "SUCCESS")
            await world.notifier.drain()
            [delivery] = world.notifier.deliveries
            assert delivery.acknowledged and delivery.attempts == 1
            assert world.channel.orders.get("MQ-1").state.value == "SUCCESS"  # the notify said so, no query yet
            result = await world.channel.wait_paid("MQ-1")
            assert result.code is ResponseCode.APPROVED and result.wallet_txn_id == paid["trade_no"]
            assert world.balance(wallet) == 100_000 - 2_580
            await assert_reconciled(world)
    run(scenario())


def test_notify_is_resent_until_acknowledged(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            real, calls = world.channel.handle_notify, []

            async def host_busy_the_first_time(provider, headers, body):
                calls.append(provider)
                return NotifyAck(503, b"busy") if len(calls) == 1 else await real(provider, headers, body)

            world.channel.handle_notify = host_busy_the_first_time
            made = await world.channel.precreate("MQ-2", 990, MERCHANT, TERMINAL, Wallet.WECHAT)
            await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, made.code_url)
            await world.notifier.drain()
            [delivery] = world.notifier.deliveries
            assert (delivery.attempts, delivery.acknowledged) == (2, True)
            assert world.channel.orders.get("MQ-2").state.value == "SUCCESS"
    run(scenario())


@pytest.mark.parametrize("provider,wallet", [("alipay-isv", Wallet.ALIPAY), ("wechat-direct", Wallet.WECHAT),
                                             ("unionpay-direct", Wallet.UNIONPAY)])
def test_forged_notify_is_refused_and_pays_nothing(provider, wallet):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            made = await world.channel.precreate("MQ-3", 1_500, MERCHANT, TERMINAL, wallet, designated=provider)
            gateway = world.services.gateways[provider]
            order = gateway.book.orders[(world.services.provider(provider).merchant, "MQ-3")]
            order.paid_at = world.clock()
            headers, body = gateway.notify_message(gateway.contracts[order.merchant], order)  # "paid", never paid
            tampered = {Wallet.ALIPAY: body.replace(b"15.00", b"15.01"), Wallet.UNIONPAY: body.replace(b"1500", b"1501"),
                        Wallet.WECHAT: body.replace(b'"nonce":"', b'"nonce":"X', 1)}[wallet]  # the amount is sealed
            assert tampered != body
            url = f"{world.channel.notify_base_url}/notify/{provider}"
            async with world.stack.session.post(url, data=tampered, headers=headers) as resp:
                assert resp.status in (200, 500)
                assert await resp.read() not in (b"success", b"ok", b"")
            assert world.channel.orders.get("MQ-3").state.value == "WAITING"
            assert (await world.channel.query("MQ-3")).code is ResponseCode.USER_PAYING  # still not paid
            assert made.code is ResponseCode.APPROVED
    run(scenario())


def test_unpaid_qr_is_closed_at_the_deadline_and_cannot_be_paid_after(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            made = await world.channel.precreate("MQ-4", 800, MERCHANT, TERMINAL, Wallet.UNIONPAY)
            result = await world.channel.wait_paid("MQ-4", timeout=30)
            assert result.code is ResponseCode.ISSUER_TIMEOUT and result.state == "CLOSED"
            with pytest.raises(customer_cli.WalletAppError) as late:
                await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, made.code_url)
            assert late.value.reason == "order_closed"
            assert world.balance(Wallet.UNIONPAY) == 100_000
            await assert_reconciled(world)
    run(scenario())


@pytest.mark.parametrize("wallet", list(Wallet))
def test_refunds_partial_idempotent_and_bounded(wallet):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            made = await world.channel.precreate("RF-1", 1_000, MERCHANT, TERMINAL, wallet)
            await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, made.code_url)
            assert (await world.channel.wait_paid("RF-1")).code is ResponseCode.APPROVED
            first = await world.channel.refund("RF-1", "RF-1-a", 300)
            assert first.code is ResponseCode.APPROVED, first
            assert (await world.channel.refund("RF-1", "RF-1-a", 300)).code is ResponseCode.APPROVED  # replay
            assert (await world.channel.refund("RF-1", "RF-1-a", 301)).code is ResponseCode.DUPLICATE
            assert (await world.channel.refund("RF-1", "RF-1-b", 800)).code is ResponseCode.ORIGINAL_AMOUNT_INCORRECT
            assert (await world.channel.refund("RF-1", "RF-1-c", 700)).code is ResponseCode.APPROVED
            assert (await world.channel.refund("NOPE", "RF-x", 1)).code is ResponseCode.ORIGINAL_NOT_FOUND
            assert world.balance(wallet) == 100_000  # 1000 paid, 300 + 700 back, the replay paid nothing
            await assert_reconciled(world)
    run(scenario())


def test_a_waiting_host_wakes_on_the_notify_not_at_its_next_poll():
    async def scenario():
        async with wallet_world(password=PASSWORD, poll=PollPolicy(first=600, total=3600)) as world:
            world.channel.sleep = asyncio.sleep  # real sleeping: only the notify can end this wait soon
            made = await world.channel.precreate("MQ-5", 660, MERCHANT, TERMINAL, Wallet.ALIPAY)
            waiting = asyncio.create_task(world.channel.wait_paid("MQ-5"))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, made.code_url)
            result = await asyncio.wait_for(waiting, 10)  # a guard, not a measurement: the poll is 600 s away
            assert result.code is ResponseCode.APPROVED
    run(scenario())
