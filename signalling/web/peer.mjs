/* ES module entry: import peer from '/peer.mjs'. peer.js is a classic
 * script (so a plain <script> tag works too); this imports it for its
 * effect and exports what it made. */
import './peer.js';

const peer = globalThis.peer;
export default peer;
export const Peer = peer.Peer;
