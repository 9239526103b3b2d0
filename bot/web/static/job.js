// A running job's page follows it (server-sent events carry the live part, rendered and
// escaped by the server); copy buttons for the pull commands. The finished page needs none
// of this: without JavaScript it shows everything, only the buttons stay hidden.
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (!job) {
    return;
  }
  var events = job.getAttribute("data-events");
  if (events && window.EventSource) {
    var source = new EventSource(events);
    source.addEventListener("live", function (event) {
      document.getElementById("live").innerHTML = event.data;
      showCopyButtons();
    });
    source.addEventListener("end", function () {
      source.close();
      window.location.reload();
    });
  }

  function showCopyButtons() {
    var buttons = document.querySelectorAll("button.copy");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
    }
  }

  function copied(button) {
    var label = button.textContent;
    button.textContent = job.getAttribute("data-copied");
    window.setTimeout(function () {
      button.textContent = label;
    }, 1500);
  }

  function copyBySelection(code, button) {
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (document.execCommand("copy")) {
      copied(button);
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) {
      return;
    }
    var code = document.getElementById(button.getAttribute("data-copy"));
    if (!code) {
      return;
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(
        function () { copied(button); },
        function () { copyBySelection(code, button); }
      );
    } else {
      copyBySelection(code, button);
    }
  });
  showCopyButtons();
})();
