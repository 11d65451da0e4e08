// A wallet as applications write them, with ethers v6, pointed at the gateway: reads the chain,
// then sends a value transfer signed locally (eth_sendRawTransaction) and waits for its receipt.
// Prints one JSON line. Usage: node ethers_wallet.cjs <rpc-url> <private-key> <to>
const { ethers } = require("ethers");

async function main() {
    const [url, key, to] = process.argv.slice(2);
    // No client-side caching (ethers keeps answers 250 ms by default): every read reaches the gateway.
    const provider = new ethers.JsonRpcProvider(url, undefined, {
        staticNetwork: true,
        cacheTimeout: -1,
    });
    const wallet = new ethers.Wallet(key, provider);
    const out = {};
    out.chainId = (await provider.getNetwork()).chainId.toString();
    out.balanceBefore = (await provider.getBalance(to)).toString();
    const tx = await wallet.sendTransaction({ to, value: 12345n });
    out.hash = tx.hash;
    out.nonce = tx.nonce;
    const receipt = await tx.wait(1, 30000);
    out.status = receipt.status;
    out.blockNumber = receipt.blockNumber;
    out.balanceAfter = (await provider.getBalance(to)).toString();
    out.pendingNonce = await provider.getTransactionCount(wallet.address, "pending");
    console.log(JSON.stringify(out));
}

main().catch((e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
});
