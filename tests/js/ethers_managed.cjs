// An application that lets the gateway hold its key, with ethers v6: a JsonRpcSigner for a managed
// sender (eth_accounts must list it), eth_sendTransaction without a nonce or fees of its own, then
// the receipt. Three sends in a row without waiting, as a backend would.
// Prints one JSON line. Usage: node ethers_managed.cjs <rpc-url> <managed-address> <to>
const { ethers } = require("ethers");

async function main() {
    const [url, from, to] = process.argv.slice(2);
    const provider = new ethers.JsonRpcProvider(url, undefined, {
        staticNetwork: true,
        cacheTimeout: -1,
    });
    const out = {};
    out.accounts = (await provider.listAccounts()).map((s) => s.address.toLowerCase());
    const signer = await provider.getSigner(from);
    const before = await provider.getBalance(to);
    const sent = [];
    for (let i = 0; i < 3; i++) sent.push(await signer.sendTransaction({ to, value: 1000n + BigInt(i) }));
    const receipts = await Promise.all(sent.map((tx) => tx.wait(1, 60000)));
    out.hashes = sent.map((tx) => tx.hash);
    out.statuses = receipts.map((r) => r.status);
    out.nonces = await Promise.all(
        receipts.map(async (r) => (await provider.getTransaction(r.hash)).nonce),
    );
    out.received = ((await provider.getBalance(to)) - before).toString();
    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
});
