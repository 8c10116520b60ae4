"""A real EIP-1193 wallet for the page: window.ethereum whose personal_sign is done in Python.

The page sees what a browser extension offers (`request({method, params})`);
the signature comes from eth_account with a real secp256k1 key, so the stub
verifies a genuine EIP-191 signature over the SIWE message the page was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from playwright.async_api import BrowserContext

BINDING = "__luxxonTestWalletSign"

_PROVIDER_JS = """
(() => {
  // lower case, as MetaMask answers eth_requestAccounts
  const address = %(address)r.toLowerCase();
  window.ethereum = {
    isLuxxonTestWallet: true,
    async request({ method, params }) {
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [address];
        case "eth_chainId":
          return "0x2105";
        case "personal_sign":
          return window.%(binding)s(params[0], params[1]);
        default: {
          const error = new Error(`test wallet: ${method} is not supported`);
          error.code = 4200;
          throw error;
        }
      }
    },
  };
})();
"""


@dataclass
class InjectedWallet:
    """One account injected into every page of a browser context."""

    account: LocalAccount
    signed: list[str] = field(default_factory=list)
    """Every message the page asked to sign, decoded, in order."""

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _sign(self, data_hex: str, address: str) -> str:
        from eth_account.messages import encode_defunct

        if address.lower() != self.address.lower():
            raise ValueError(f"asked to sign for {address}, this wallet holds {self.address}")
        message = bytes.fromhex(data_hex.removeprefix("0x"))
        self.signed.append(message.decode())
        signature = self.account.sign_message(encode_defunct(primitive=message)).signature
        return "0x" + bytes(signature).hex()

    async def install(self, context: BrowserContext) -> None:
        async def sign(data_hex: Any, address: Any) -> str:
            return self._sign(str(data_hex), str(address))

        await context.expose_function(BINDING, sign)
        await context.add_init_script(_PROVIDER_JS % {"address": self.address, "binding": BINDING})
