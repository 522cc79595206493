import type { OpenAPIHono } from '@hono/zod-openapi';

interface DocumentedRoute {
  method: string;
  pattern: RegExp;
  template: string;
  parameters: string[];
}

const routesOf = new WeakMap<OpenAPIHono, DocumentedRoute[]>();

/**
 * A query parameter the matched route does not declare is refused rather than ignored: `?offset=`
 * on a list or a log would otherwise silently return something else than asked. Returns the
 * message, or undefined when every parameter is known (or no documented route matches).
 */
export function unknownQueryParameters(
  app: OpenAPIHono,
  method: string,
  path: string,
  names: readonly string[],
): string | undefined {
  if (names.length === 0) return undefined;
  const route = documentedRoutes(app).find((r) => r.method === method.toLowerCase() && r.pattern.test(path));
  if (!route) return undefined;
  const unknown = names.filter((name) => !route.parameters.includes(name));
  if (unknown.length === 0) return undefined;
  const takes =
    route.parameters.length === 0
      ? 'it takes no query parameters'
      : `it takes ${route.parameters.map((name) => `\`${name}\``).join(', ')}`;
  return `Unknown query parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((name) => `\`${name}\``).join(', ')} for ${method.toUpperCase()} ${route.template}: ${takes}`;
}

/** Built on first use, once every route is registered. */
function documentedRoutes(app: OpenAPIHono): DocumentedRoute[] {
  let routes = routesOf.get(app);
  if (routes) return routes;
  routes = [];
  for (const definition of app.openAPIRegistry.definitions) {
    if (definition.type !== 'route') continue;
    const { method, path, request } = definition.route;
    const query = request?.query as { shape?: Record<string, unknown> } | undefined;
    const source = path
      .split('/')
      .map((segment) => (/^\{.+\}$/.test(segment) ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    routes.push({
      method,
      pattern: new RegExp(`^${source}$`),
      template: path,
      parameters: Object.keys(query?.shape ?? {}),
    });
  }
  routesOf.set(app, routes);
  return routes;
}
