import { MemoryEngine } from '../../src/engine/memory/memory-engine.ts';
import { CONTRACT_LIMITS, engineContract } from './contract.ts';

engineContract('memory', async (clock) => {
  const engine = new MemoryEngine(clock, CONTRACT_LIMITS);
  return { engine, cleanup: () => engine.close() };
});
