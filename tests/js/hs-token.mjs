// Mints a HiveSigner "code" token the way ecency does for key and Keychain users (makeHsCode):
// JSON {signed_message: {type, app}, authors: [user], timestamp: <seconds, float>}, its
// JSON.stringify hashed with sha256 and signed by @hiveio/dhive, the signature added, and the
// whole JSON.stringify'd and base64url'd with ecency's alphabet (+ → -, / → _, = → .).
//
//   node hs-token.mjs WIF USER APP [SECONDS_FROM_NOW] [TYPE]
import { PrivateKey, cryptoUtils } from "@hiveio/dhive";

const [wif, user, app, offset = "0", type = "code"] = process.argv.slice(2);
if (!wif || !user || !app) {
  console.error("usage: node hs-token.mjs WIF USER APP [SECONDS_FROM_NOW] [TYPE]");
  process.exit(2);
}
const timestamp = new Date().getTime() / 1000 + Number(offset);
const message = { signed_message: { type, app }, authors: [user], timestamp };
const hash = cryptoUtils.sha256(JSON.stringify(message));
message.signatures = [PrivateKey.fromString(wif).sign(hash).toString()];
const b64u = Buffer.from(JSON.stringify(message)).toString("base64")
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=/g, ".");
process.stdout.write(b64u);
