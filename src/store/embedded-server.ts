import { startEmbeddedDynamo } from './embedded.ts';

/**
 * Entry of the embedded DynamoDB server's own process (see `startEmbeddedDynamoProcess`):
 * dynalite parses, stores and answers on its own core instead of sharing the engine's event loop.
 * Arguments: the database folder ('' keeps it in memory) and the port (0: any free one). It exits
 * when its parent goes away, even after a kill -9 of the parent.
 */
const path = process.argv[2] || undefined;
const port = Number(process.argv[3] ?? 0);
const server = await startEmbeddedDynamo({ ...(path === undefined ? {} : { path }), port });
process.send?.({ type: 'listening', endpoint: server.endpoint });
const shutdown = () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('disconnect', shutdown);
process.on('SIGTERM', shutdown);
