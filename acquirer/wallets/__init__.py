"""Wallets: the simulated Alipay-, WeChat- and UnionPay-QR-style services, the host's
adapters to them, routing across provider channels, and channel reconciliation.

Simulators: book, gateway, sim_alipay, sim_wechat, sim_unionpay, faults, notifier, serve;
the customer's wallet CLI: customer_cli. Host side: codes, signing, providers, adapter*,
orders, outcomes, routing, scoring, routing_state, reconcile, notify_endpoint, stack; the
facade the pipeline calls is `acquirer.channels.qr.QRChannel`. demo builds a whole world
on one clock; cli adds `acquirer wallets ...` and `acquirer channel ...`. docs/wallets.md
has the API styles, code tables and rules.
"""
