// One escaper for HTML and SVG: both are XML-ish, and escaping quotes too makes the same function safe
// inside attribute values, so no call site has to remember which context it is in.
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** Alias for readability at HTML call sites. */
export const escapeHtml = escapeXml;
