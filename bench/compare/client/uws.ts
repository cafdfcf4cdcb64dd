/** U: raw uWebSockets.js pub/sub (arms/uws.ts), through the shared mini-protocol adapter. */
import { miniClient } from './mini.ts';

export default miniClient('uws');
