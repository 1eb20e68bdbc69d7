// cardvault merchant SDK: mounts the hosted card form in an iframe, styles it, asks it to submit, and hands back the token.
(function () {
  'use strict';
  var SDK_VERSION = '1.0.0';
  var PROTOCOL = 'cardvault/1';
  var script = document.currentScript;
  // The vault is wherever this file came from: the form is framed from, and only answered by, that origin.
  var VAULT_ORIGIN = new URL(script && script.src ? script.src : location.href).origin;

  function mount(options) {
    if (!options || typeof options.session !== 'string') throw new TypeError('CardVault.mount needs { session, container }');
    var container = typeof options.container === 'string' ? document.querySelector(options.container) : options.container;
    if (!container) throw new TypeError('CardVault.mount: no such container');
    var iframe = document.createElement('iframe');
    iframe.src = VAULT_ORIGIN + '/hosted/card-form?session=' + encodeURIComponent(options.session) + '&origin=' + encodeURIComponent(location.origin);
    iframe.title = options.title || 'Card details';
    iframe.width = '100%';
    iframe.height = String(options.height || 300);
    iframe.setAttribute('frameborder', '0');
    iframe.referrerPolicy = 'no-referrer';

    var nextId = 1;
    var pending = {};
    var markReady;
    var ready = new Promise(function (resolve) { markReady = resolve; });

    function send(message) {
      iframe.contentWindow.postMessage(Object.assign({ protocol: PROTOCOL }, message), VAULT_ORIGIN);
    }
    /** Only what the merchant needs: the token and the card's public facts. */
    function resultOf(message) {
      return { token: message.token, brand: message.brand, last4: message.last4, exp_month: message.exp_month, exp_year: message.exp_year };
    }
    function onMessage(event) {
      if (event.origin !== VAULT_ORIGIN || event.source !== iframe.contentWindow) return;
      var message = event.data;
      if (!message || message.protocol !== PROTOCOL) return;
      var waiting = typeof message.id === 'number' ? pending[message.id] : undefined;
      if (waiting) delete pending[message.id];
      if (message.type === 'ready') {
        if (options.style) send({ type: 'style', style: options.style });
        markReady();
        if (options.onReady) options.onReady();
      } else if (message.type === 'change') {
        if (options.onChange) options.onChange({ brand: message.brand });
      } else if (message.type === 'result') {
        var result = resultOf(message);
        if (waiting) waiting.resolve(result);
        else if (options.onToken) options.onToken(result);
      } else if (message.type === 'error') {
        var error = new Error(message.message || message.code);
        error.code = message.code;
        if (waiting) waiting.reject(error);
        else if (options.onError) options.onError(error);
      }
    }
    window.addEventListener('message', onMessage);
    container.appendChild(iframe);

    return {
      ready: ready,
      /** Resolves with {token, brand, last4, exp_month, exp_year}; rejects with an Error carrying `code`. */
      submit: function () {
        return ready.then(function () {
          return new Promise(function (resolve, reject) {
            var id = nextId++;
            pending[id] = { resolve: resolve, reject: reject };
            send({ type: 'submit', id: id });
          });
        });
      },
      unmount: function () {
        window.removeEventListener('message', onMessage);
        iframe.remove();
      },
    };
  }

  window.CardVault = Object.freeze({ version: SDK_VERSION, mount: mount });
})();
