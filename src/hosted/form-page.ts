// The hosted card form's HTML and its Content-Security-Policy; the error page a bad session gets instead.
import type { HostedAssets } from './assets';
import { CSP_REPORT_PATH } from './http/csp-report-routes';
import type { PageSession } from './page-session';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/**
 * Scripts and styles from this origin only, each pinned by SRI in the page; the form talks to this origin
 * only; and only the session's pages may frame it. Nothing inline, so injected markup cannot run.
 */
export function formPolicy(frameAncestors: readonly string[]): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "form-action 'none'",
    "base-uri 'none'",
    `frame-ancestors ${frameAncestors.length > 0 ? frameAncestors.join(' ') : "'none'"}`,
    // Anything blocked is reported, so a tampered page is noticed (metric csp_violations_total), not just stopped.
    `report-uri ${CSP_REPORT_PATH}`,
  ].join('; ');
}

function field(id: string, label: string, attributes: string, hint = ''): string {
  return `<div class="field" id="${id}-field">
  <label for="${id}">${label}</label>
  <input id="${id}" name="${id}" ${attributes} aria-describedby="${id}-error${hint ? ` ${id}-hint` : ''}" aria-invalid="false">
  ${hint ? `<p class="hint" id="${id}-hint">${hint}</p>` : ''}
  <p class="error" id="${id}-error" aria-live="polite"></p>
</div>`;
}

export function renderForm(assets: HostedAssets, session: PageSession, sessionToken: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Card details</title>
<link rel="stylesheet" href="/hosted/form.css" integrity="${assets.formStyle.integrity}">
<script src="/hosted/form.js" integrity="${assets.formScript.integrity}" defer></script>
</head>
<body>
<form id="card-form" novalidate autocomplete="on" data-session="${escapeHtml(sessionToken)}" data-parent-origin="${escapeHtml(session.parentOrigin)}">
${field('card-number', 'Card number', 'type="text" inputmode="numeric" autocomplete="cc-number" maxlength="23" spellcheck="false" required')}
<p class="brand" id="card-brand" aria-live="polite"></p>
<div class="row">
${field('card-expiry', 'Expiry (MM / YY)', 'type="text" inputmode="numeric" autocomplete="cc-exp" maxlength="7" placeholder="MM / YY" required')}
${field('card-cvc', 'Security code', 'type="text" inputmode="numeric" autocomplete="cc-csc" maxlength="4" required', '3 digits on the back, 4 on the front for American Express')}
</div>
${field('card-name', 'Name on card (optional)', 'type="text" autocomplete="cc-name" maxlength="100"')}
<p class="status" id="form-status" role="status" aria-live="polite"></p>
</form>
</body>
</html>
`;
}

export function renderError(title: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Card form unavailable</title></head>
<body><main class="unavailable" role="alert"><h1>Card form unavailable</h1><p>${escapeHtml(title)}</p>
<p>Reload the checkout page to start again.</p></main></body>
</html>
`;
}
