"""How tightly a terminal is fenced, by its merchant's risk grade and whether it moves.

Case 32's acquirer sets the reporting frequency and the tolerance per merchant from its
industry and risk grade: riskier merchants report more often and may not go as long
without a fresh fix; mobile sellers get a wider circle (or a corridor) and report more
often, since they move. The values are data, not code: pass your own `FencePolicy`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class GradePolicy:
    report_interval_s: int  # how often the terminal must send a signed report
    require_fix: bool = True  # a transaction without a report is declined (G1)


DEFAULT_GRADES = MappingProxyType({
    "A": GradePolicy(900),  # long-standing, low-risk merchants
    "B": GradePolicy(600),  # the registry's default grade
    "C": GradePolicy(300),
    "D": GradePolicy(120),  # under watch
})


@dataclass(frozen=True)
class FencePolicy:
    grades: Mapping[str, GradePolicy] = field(default_factory=lambda: DEFAULT_GRADES)
    unknown_grade: str = "D"  # a grade nobody configured gets the strictest treatment
    mobile_interval_factor: float = 0.5
    mobile_radius_factor: float = 4.0
    mobile_min_radius_m: float = 3000.0
    corridor_width_m: float = 1000.0  # a route corridor registered without a width
    # faster than this between two fixes is a spoof or a broken receiver, not a journey
    max_speed_kmh_fixed: float = 300.0
    max_speed_kmh_mobile: float = 350.0  # a seller on a high-speed train between markets
    accuracy_credit_m: float = 100.0  # a fix's own error bar counts in its favour, up to this
    max_future_s: float = 30.0  # fix times ahead of the host clock by more are refused

    def grade(self, risk_grade: str) -> GradePolicy:
        return self.grades.get(risk_grade) or self.grades[self.unknown_grade]

    def report_interval_s(self, risk_grade: str, mobile: bool = False) -> int:
        """Seconds between signed reports: what the host tells the terminal."""
        interval = self.grade(risk_grade).report_interval_s
        return max(30, int(interval * self.mobile_interval_factor)) if mobile else interval

    def max_fix_age_s(self, risk_grade: str, mobile: bool = False) -> int:
        # two intervals: one report may be late or lost without blocking the till
        return 2 * self.report_interval_s(risk_grade, mobile)

    def require_fix(self, risk_grade: str) -> bool:
        return self.grade(risk_grade).require_fix

    def max_speed_mps(self, mobile: bool) -> float:
        return (self.max_speed_kmh_mobile if mobile else self.max_speed_kmh_fixed) / 3.6

    def radius_m(self, merchant_radius_m: float, mobile: bool) -> float:
        if not mobile:
            return merchant_radius_m
        return max(merchant_radius_m * self.mobile_radius_factor, self.mobile_min_radius_m)


DEFAULT_POLICY = FencePolicy()


def report_interval_s(merchant, policy: FencePolicy = DEFAULT_POLICY) -> int:
    """Seconds between reports for a registry `Merchant` (risk_grade, mobile)."""
    return policy.report_interval_s(merchant.risk_grade, bool(merchant.mobile))
