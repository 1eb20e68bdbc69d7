// The hosted card form, inside the merchant's iframe: checks the card as typed, encrypts it to the vault, tokenizes it once.
(function () {
  'use strict';
  var form = document.getElementById('card-form');
  if (!form) return;
  var SESSION = form.dataset.session;
  // Checked by the server against the session's origins before this page was served.
  var PARENT_ORIGIN = form.dataset.parentOrigin;
  var PROTOCOL = 'cardvault/1';
  var inputs = {
    number: document.getElementById('card-number'),
    expiry: document.getElementById('card-expiry'),
    cvc: document.getElementById('card-cvc'),
    name: document.getElementById('card-name'),
  };
  var brandLine = document.getElementById('card-brand');
  var statusLine = document.getElementById('form-status');

  // IIN ranges as the vault reads them; the first match wins, so narrower ranges come first.
  var BRANDS = [
    { brand: 'amex', label: 'American Express', re: /^3[47]/, lengths: [15], cvc: 4, groups: [4, 6, 5] },
    { brand: 'diners', label: 'Diners Club', re: /^3(0[0-5]|[689])/, lengths: [14, 16, 19], cvc: 3, groups: [4, 6, 4] },
    { brand: 'jcb', label: 'JCB', re: /^35(2[89]|[3-8])/, lengths: [16, 17, 18, 19], cvc: 3 },
    { brand: 'visa', label: 'Visa', re: /^4/, lengths: [13, 16, 19], cvc: 3 },
    { brand: 'mastercard', label: 'Mastercard', re: /^(5[1-5]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720)/, lengths: [16], cvc: 3 },
    { brand: 'discover', label: 'Discover', re: /^(6011|64[4-9]|65)/, lengths: [16, 17, 18, 19], cvc: 3 },
    { brand: 'unionpay', label: 'UnionPay', re: /^62/, lengths: [16, 17, 18, 19], cvc: 3 },
    { brand: 'maestro', label: 'Maestro', re: /^(5[06-9]|6)/, lengths: [12, 13, 14, 15, 16, 17, 18, 19], cvc: 3 },
  ];
  var UNKNOWN = { brand: 'unknown', label: '', lengths: [12, 13, 14, 15, 16, 17, 18, 19], cvc: 3 };

  // A full-width (Japanese IME) or Arabic-Indic digit is the same digit, not a character to drop: the vault takes
  // ASCII only. Unicode encodes each script's decimal digits as ten consecutive code points, 0 to 9.
  var DECIMAL = /\p{Nd}/u;
  function asciiDigit(d) {
    var code = d.codePointAt(0);
    var zero = code;
    while (DECIMAL.test(String.fromCodePoint(zero - 1))) zero--;
    return String((code - zero) % 10);
  }
  var digitsOf = function (text) { return text.replace(/\p{Nd}/gu, asciiDigit).replace(/\D/g, ''); };
  var brandOf = function (digits) {
    for (var i = 0; i < BRANDS.length; i++) if (BRANDS[i].re.test(digits)) return BRANDS[i];
    return UNKNOWN;
  };
  function luhn(digits) {
    var sum = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
    }
    return sum % 10 === 0;
  }
  function group(digits, groups) {
    var out = [];
    var at = 0;
    for (var i = 0; at < digits.length; i++) {
      var size = groups && groups[i] ? groups[i] : 4;
      out.push(digits.slice(at, at + size));
      at += size;
    }
    return out.join(' ');
  }

  function setError(input, message) {
    document.getElementById(input.id + '-error').textContent = message;
    input.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  function checkNumber(final) {
    var digits = digitsOf(inputs.number.value);
    var card = brandOf(digits);
    var complete = card.lengths.indexOf(digits.length) >= 0;
    var message = '';
    if (digits.length === 0) message = final ? 'Enter the card number.' : '';
    else if (digits.length >= Math.max.apply(null, card.lengths) || (final && !complete)) {
      if (!complete) message = 'The card number is too ' + (final ? 'short or long.' : 'long.');
      else if (!luhn(digits)) message = 'The card number is not valid: check the digits.';
    } else if (complete && !luhn(digits) && final) message = 'The card number is not valid: check the digits.';
    setError(inputs.number, message);
    return { ok: complete && luhn(digits), digits: digits, card: card };
  }

  // The vault refuses a later year (src/domain/expiry.ts): a typo such as 62 for 26 is caught here, before it spends the session.
  var MAX_YEARS_AHEAD = 30;

  function checkExpiry(final) {
    var digits = digitsOf(inputs.expiry.value);
    var month = Number(digits.slice(0, 2));
    var year = 2000 + Number(digits.slice(2, 4));
    var message = '';
    var ok = digits.length === 4 && month >= 1 && month <= 12;
    if (digits.length >= 2 && (month < 1 || month > 12)) message = 'The month is 01 to 12.';
    else if (ok) {
      var now = new Date();
      // A card is good to the end of its expiry month.
      if (year < now.getUTCFullYear() || (year === now.getUTCFullYear() && month < now.getUTCMonth() + 1)) {
        ok = false;
        message = 'The card has expired.';
      } else if (year > now.getUTCFullYear() + MAX_YEARS_AHEAD) {
        ok = false;
        message = 'Check the expiry year.';
      }
    } else if (final) message = digits.length === 0 ? 'Enter the expiry date.' : 'Enter the expiry as MM / YY.';
    setError(inputs.expiry, message);
    return { ok: ok, month: month, year: year };
  }

  function checkCvc(final, card) {
    var digits = digitsOf(inputs.cvc.value);
    var ok = digits.length === card.cvc;
    setError(inputs.cvc, !ok && (final || digits.length > card.cvc) ? 'Enter the ' + card.cvc + '-digit security code.' : '');
    return { ok: ok, digits: digits };
  }

  var lastBrand = '';
  inputs.number.addEventListener('input', function () {
    var digits = digitsOf(inputs.number.value).slice(0, 19);
    var card = brandOf(digits);
    inputs.number.value = group(digits, card.groups);
    inputs.cvc.maxLength = card.cvc;
    brandLine.textContent = card.label;
    checkNumber(false);
    if (card.brand !== lastBrand) {
      lastBrand = card.brand;
      // The brand only: nothing the user typed crosses to the parent.
      post({ type: 'change', brand: card.brand });
    }
  });
  inputs.number.addEventListener('blur', function () { if (inputs.number.value) checkNumber(true); });
  inputs.expiry.addEventListener('input', function (event) {
    // Autofill writes MM/YYYY into a 7-character cc-exp field (Chromium does), and so may a paste: keep the
    // year's last two digits, not its century, or every such card would read as expired in 2020.
    var full = /^\s*([0-9]{1,2})\s*[/.-]\s*20([0-9]{2})\s*$/.exec(inputs.expiry.value);
    var digits = full ? ('0' + full[1]).slice(-2) + full[2] : digitsOf(inputs.expiry.value).slice(0, 4);
    // "4" means April: pad it, so typing the month never needs a leading zero.
    if (digits.length === 1 && digits > '1') digits = '0' + digits;
    var deleting = event.inputType && event.inputType.indexOf('delete') === 0;
    inputs.expiry.value = digits.length > 2 || (digits.length === 2 && !deleting) ? digits.slice(0, 2) + ' / ' + digits.slice(2) : digits;
    checkExpiry(false);
  });
  inputs.expiry.addEventListener('blur', function () { if (inputs.expiry.value) checkExpiry(true); });
  inputs.cvc.addEventListener('input', function () {
    inputs.cvc.value = digitsOf(inputs.cvc.value).slice(0, 4);
    checkCvc(false, brandOf(digitsOf(inputs.number.value)));
  });

  function base64url(bytes) {
    var text = '';
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  /**
   * A compact JWE (RSA-OAEP-256, A256GCM) to the vault's current key, as src/crypto/client-encryption.ts expects,
   * bound to this form's session: its header names the SHA-256 of the session token, so the vault takes it with
   * this session alone.
   */
  async function encrypt(jwk, plaintext) {
    var subtle = window.crypto.subtle;
    var rsa = await subtle.importKey('jwk', { kty: 'RSA', n: jwk.n, e: jwk.e, alg: 'RSA-OAEP-256', ext: true }, { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['encrypt']);
    var cekBytes = window.crypto.getRandomValues(new Uint8Array(32));
    var cek = await subtle.importKey('raw', cekBytes, { name: 'AES-GCM' }, false, ['encrypt']);
    var session = base64url(new Uint8Array(await subtle.digest('SHA-256', new TextEncoder().encode(SESSION))));
    var header = base64url(new TextEncoder().encode(JSON.stringify({ alg: 'RSA-OAEP-256', enc: 'A256GCM', kid: jwk.kid, cardvault_session: session })));
    var iv = window.crypto.getRandomValues(new Uint8Array(12));
    var sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: iv, additionalData: new TextEncoder().encode(header), tagLength: 128 }, cek, new TextEncoder().encode(plaintext)));
    var wrapped = new Uint8Array(await subtle.encrypt({ name: 'RSA-OAEP' }, rsa, cekBytes));
    cekBytes.fill(0);
    return [header, base64url(wrapped), base64url(iv), base64url(sealed.subarray(0, sealed.length - 16)), base64url(sealed.subarray(sealed.length - 16))].join('.');
  }

  var submitting = null;
  // Set once the session has gone to the vault: every later submit gets this answer, and nothing is sent again.
  var spent = null;
  var ALREADY_SUBMITTED = { type: 'error', code: 'session_used', message: 'This form has already been submitted.' };

  /** The session went to the vault: it cannot be sent again, so neither can the number and CVC, which are cleared. */
  function finish(outcome, status) {
    spent = outcome.type === 'result' ? ALREADY_SUBMITTED : outcome;
    inputs.number.value = '';
    inputs.cvc.value = '';
    Object.keys(inputs).forEach(function (key) { inputs[key].disabled = true; });
    statusLine.textContent = status;
    return outcome;
  }

  function failed(code, title) {
    return finish({ type: 'error', code: code, message: title }, title.replace(/\.?$/, '.') + ' Reload the page to start again.');
  }

  async function tokenize() {
    var number = checkNumber(true);
    var expiry = checkExpiry(true);
    var cvc = checkCvc(true, number.card);
    if (!number.ok || !expiry.ok || !cvc.ok) {
      var first = !number.ok ? inputs.number : !expiry.ok ? inputs.expiry : inputs.cvc;
      first.focus();
      return { type: 'error', code: 'invalid_card', message: 'Check the highlighted fields.' };
    }
    var card = { number: number.digits, exp_month: expiry.month, exp_year: expiry.year, cvc: cvc.digits };
    // The vault refuses control characters in a name; a text input keeps a pasted tab, which would spend the session.
    var name = inputs.name.value.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
    if (name) card.holder_name = name;
    statusLine.textContent = 'Saving your card…';
    var body;
    try {
      var jwks = await (await fetch('/.well-known/jwks.json', { credentials: 'omit', cache: 'no-store' })).json();
      var jwk = (jwks.keys || []).filter(function (k) { return k.use === 'enc'; })[0];
      if (!jwk) throw new Error('no encryption key');
      body = await encrypt(jwk, JSON.stringify({ card: card }));
    } catch {
      // The session has not left this page yet: the shopper may try again.
      statusLine.textContent = 'The vault could not be reached. Try again.';
      return { type: 'error', code: 'network_error', message: 'The vault could not be reached.' };
    }
    var response;
    try {
      response = await fetch('/hosted/tokens', {
        method: 'POST',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/jose', Authorization: 'ClientSession ' + SESSION, 'X-Parent-Origin': PARENT_ORIGIN },
        body: body,
      });
    } catch {
      // No answer, but fetch cannot tell whether the request reached the vault before the connection failed, and
      // the vault spends the session as soon as it reads it: a retry could only earn session_used, so this is final too.
      return failed('network_error', 'The vault could not be reached.');
    }
    // Any answer, whatever its status, means the vault has seen the session and may have spent it (see
    // POST /hosted/tokens in openapi.json): the merchant gets the real cause, never a later retry's session_used.
    var answer = await response.json().catch(function () { return {}; });
    if (!response.ok || !answer.token || !answer.card) {
      return failed(answer.code || 'error', answer.title || 'The card could not be saved.');
    }
    return finish(
      { type: 'result', token: answer.token, brand: answer.card.brand, last4: answer.card.last4, exp_month: answer.card.exp_month, exp_year: answer.card.exp_year },
      'Card saved.',
    );
  }

  function submit(id) {
    if (spent) return post(Object.assign({ id: id }, spent));
    if (!submitting) {
      submitting = tokenize()
        // Only something unforeseen lands here, possibly after the session was sent: final, to be safe.
        .catch(function () { return failed('error', 'The card could not be saved.'); })
        .then(function (outcome) { submitting = null; return outcome; });
    }
    submitting.then(function (outcome) { post(Object.assign({ id: id }, outcome)); });
  }

  function post(message) {
    // The exact origin: a parent that navigated elsewhere receives nothing.
    window.parent.postMessage(Object.assign({ protocol: PROTOCOL }, message), PARENT_ORIGIN);
  }

  var STYLABLE = ['color', 'backgroundColor', 'borderColor', 'borderRadius', 'fontFamily', 'fontSize', 'fontWeight', 'padding'];
  function applyStyle(style) {
    if (!style || typeof style !== 'object') return;
    STYLABLE.forEach(function (property) {
      var value = style[property];
      // No url(), so a style option cannot make the form fetch anything.
      if (typeof value !== 'string' || value.length > 100 || /url\(|[;{}<>\\]/i.test(value)) return;
      Object.keys(inputs).forEach(function (key) { inputs[key].style[property] = value; });
    });
  }

  window.addEventListener('message', function (event) {
    if (event.origin !== PARENT_ORIGIN || event.source !== window.parent) return;
    var message = event.data;
    if (!message || message.protocol !== PROTOCOL) return;
    if (message.type === 'style') applyStyle(message.style);
    else if (message.type === 'submit') submit(typeof message.id === 'number' ? message.id : null);
  });
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    submit(null);
  });
  post({ type: 'ready' });
})();
