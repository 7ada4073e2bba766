"""Runs every conformance case against a running sim; exit status 0 only if all pass.

Usage (the Rust test does this): SIM_BASE=… SIM_CA=… SIM_CONFIG_DIR=… python run.py
[suite …]. Suites: google, msal, msgraph.
"""

import importlib
import sys
import traceback

SUITES = ["google", "msal", "msgraph"]


def main(names):
    failed, passed = [], 0
    for name in names or SUITES:
        module = importlib.import_module(f"{name}_suite")
        for function in module.CASES:
            label = f"{name}: {function.case_name}"
            try:
                function()
                passed += 1
                print(f"ok   {label}", flush=True)
            except Exception:  # a case's failure is reported, the others still run
                failed.append(label)
                print(f"FAIL {label}\n{traceback.format_exc()}", flush=True)
    print(f"conformance: {passed} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
