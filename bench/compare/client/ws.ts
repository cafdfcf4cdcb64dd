/** W: a plain `ws` server broadcasting a prebuilt frame (arms/ws.ts), through the shared mini-protocol adapter. */
import { miniClient } from './mini.ts';

export default miniClient('ws');
