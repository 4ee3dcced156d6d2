// Shows every <time datetime> in the viewer's own time zone (the page says UTC without it).
(function () {
  "use strict";
  var format;
  try {
    format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) {
    return;
  }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var when = new Date(times[i].getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      times[i].title = times[i].textContent;
      times[i].textContent = format.format(when);
    }
  }
})();
