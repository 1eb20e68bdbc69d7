// The demo merchant checkout: mounts the vault's card form with the SDK and shows the token that comes back.
(function () {
  'use strict';
  var frame = document.getElementById('card-frame');
  var pay = document.getElementById('pay');
  var result = document.getElementById('result');
  var form = window.CardVault.mount({
    session: frame.dataset.session,
    container: frame,
    style: { fontFamily: 'Georgia, serif', borderRadius: '4px' },
    onChange: function (change) { pay.textContent = change.brand && change.brand !== 'unknown' ? 'Pay with ' + change.brand : 'Pay'; },
    onToken: show,
    onError: fail,
  });
  function show(card) {
    result.textContent = JSON.stringify(card);
    result.dataset.state = 'token';
    pay.disabled = true;
  }
  function fail(error) {
    result.textContent = 'Not saved: ' + (error.code || error.message);
    result.dataset.state = 'error';
  }
  pay.addEventListener('click', function () {
    form.submit().then(show, fail);
  });
})();
