"""Customer-presented codes through each wallet, over real HTTP with real signatures.

Each code is fetched from the wallet's customer app, rendered to a PNG, read back with
pyzbar (as a camera scanner would) and paid through the host's QR channel.
"""
from __future__ import annotations

import asyncio

import pytest

from acquirer.protocol import ResponseCode
from acquirer.wallets.codes import Wallet, wallet_of_code
from acquirer.wallets.customer_cli import read_qr, render_png
from acquirer.wallets.demo import wallet_world

PASSWORD = "pw-8731"  # the simulated customers' payment password
MERCHANT, TERMINAL = "898440358120001", "T0000001"


def run(coro):
    return asyncio.run(coro)


async def scanned_code(world, wallet: Wallet, tmp_path, account: str = "alice") -> str:
    code = await world.customer_code(wallet, account)
    png = render_png(code, tmp_path / f"{wallet.value}-{code[-4:]}.png")
    return read_qr(png)


async def assert_reconciled(world) -> None:
    await world.notifier.drain()
    report = await world.reconcile()
    assert report.clean, report.describe()


@pytest.mark.parametrize("wallet", list(Wallet))
def test_customer_code_png_pays_through_each_wallet(wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            code = await scanned_code(world, wallet, tmp_path)
            assert wallet_of_code(code) is wallet
            result = await world.channel.pay_customer_code("ORD-1", code, 1_234, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.APPROVED, result
            assert result.wallet == wallet.value and result.provider.startswith(wallet.value)
            assert result.wallet_txn_id
            assert world.balance(wallet) == 100_000 - 1_234
            assert world.wallet_order(result.provider, "ORD-1").status.value == "SUCCESS"
            await assert_reconciled(world)
    run(scenario())


def test_retried_order_id_is_answered_from_the_book_and_never_charges_twice(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            code = await scanned_code(world, Wallet.WECHAT, tmp_path)
            first = await world.channel.pay_customer_code("ORD-2", code, 500, MERCHANT, TERMINAL)
            again = await asyncio.gather(*[world.channel.pay_customer_code("ORD-2", code, 500, MERCHANT, TERMINAL)
                                           for _ in range(3)])
            assert first.code is ResponseCode.APPROVED
            assert {r.wallet_txn_id for r in again} == {first.wallet_txn_id}
            assert all(r.code is ResponseCode.APPROVED for r in again)
            assert world.balance(Wallet.WECHAT) == 100_000 - 500
            other = await world.channel.pay_customer_code("ORD-2", code, 501, MERCHANT, TERMINAL)
            assert other.code is ResponseCode.DUPLICATE  # same id, different payment: refused, not charged
            assert world.balance(Wallet.WECHAT) == 100_000 - 500
            await assert_reconciled(world)
    run(scenario())


@pytest.mark.parametrize("wallet", list(Wallet))
def test_replayed_and_expired_codes_are_refused_with_their_own_codes(wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            code = await scanned_code(world, wallet, tmp_path)
            ok = await world.channel.pay_customer_code("A-1", code, 100, MERCHANT, TERMINAL)
            assert ok.code is ResponseCode.APPROVED
            replay = await world.channel.pay_customer_code("A-2", code, 100, MERCHANT, TERMINAL)
            assert replay.code is ResponseCode.SUSPECTED_FRAUD, replay
            assert "already used" in replay.text
            stale = await scanned_code(world, wallet, tmp_path)
            world.clock.advance(61)  # codes live 60 s
            expired = await world.channel.pay_customer_code("A-3", stale, 100, MERCHANT, TERMINAL)
            assert expired.code is ResponseCode.EXPIRED_CARD, expired
            assert world.balance(wallet) == 100_000 - 100
            await assert_reconciled(world)
    run(scenario())


def test_declines_map_to_precise_codes(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            code = await scanned_code(world, Wallet.UNIONPAY, tmp_path, account="bob")  # bob has 50.00
            poor = await world.channel.pay_customer_code("D-1", code, 6_000, MERCHANT, TERMINAL)
            assert poor.code is ResponseCode.INSUFFICIENT_FUNDS
            forged = "62" + "0" * 17  # the right shape, never issued
            assert (await world.channel.pay_customer_code("D-2", forged, 100, MERCHANT, TERMINAL)).code \
                is ResponseCode.INVALID_CARD
            not_a_code = await world.channel.pay_customer_code("D-3", "https://example.com/x", 100, MERCHANT, TERMINAL)
            assert not_a_code.code is ResponseCode.INVALID_CARD and not not_a_code.provider
            bad_id = await world.channel.pay_customer_code("D 4/../x", code, 100, MERCHANT, TERMINAL)
            assert bad_id.code is ResponseCode.FORMAT_ERROR
            assert world.balance(Wallet.UNIONPAY, "bob") == 5_000
            await assert_reconciled(world)
    run(scenario())
