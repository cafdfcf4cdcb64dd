/**
 * The Life OS realtime client SDK: `import { connect } from 'lifeos-realtime-gateway/client'`.
 * Runs in browsers, React Native and Node (pass the `ws` package as `WebSocket`); no Node
 * built-ins. See docs/client.md.
 */
export { connect, DEFAULTS } from './client.ts';
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
export {
  ConnectionRefusedError,
  HistoryGoneError,
  LifeosClientError,
  PublishRejectedError,
  ServerError,
  type ClientErrorCode,
} from './errors.ts';
export {
  CloseCodes,
  Subprotocols,
  type CodecName,
  type Envelope,
  type EventPayload,
  type EventType,
} from './protocol.ts';
export {
  keyValueStorage,
  localStorageStorage,
  memoryStorage,
  type Checkpoint,
  type CheckpointStorage,
  type KeyValueStore,
} from './storage.ts';
export { closeAction, type CloseAction } from './close-action.ts';
export {
  SubscriptionStates,
  type AckOptions,
  type BrowserEventTargets,
  type Client,
  type ConnectOptions,
  type DeliveredEvent,
  type PublishOptions,
  type PublishResult,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionEvents,
  type SubscriptionListeners,
  type SubscriptionState,
  type SubscriptionStats,
  type WebSocketConstructor,
} from './types.ts';
