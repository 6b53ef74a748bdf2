# php artisan down, run in the new release, for maintenance-mode: true.
# Laravel writes storage/framework/down and maintenance.php in place
# (file_put_contents truncates, then writes), and the live release reads
# them on every request through the shared storage/: a request that comes
# in between reads an empty down file and answers HTTP 500 instead of 503.
# So artisan runs with a prepended file that gives its console commands a
# file_put_contents of their own (PHP looks a function up in the caller's
# namespace first): a temp file in the same directory, then a rename.
if [ -n "$PREVIOUS_RELEASE_ID" ]; then
  echo "> php artisan down (release $PREVIOUS_RELEASE_ID is live: maintenance mode until after the switch)"
  atomic_writes=$(mktemp)
  cat >"$atomic_writes" <<'PHP'
<?php
namespace AtomicDeploy;

function put_contents_atomically($file, $data, $flags, $context)
{
    if ($flags & FILE_APPEND) {
        return \file_put_contents($file, $data, $flags, $context);
    }
    $tmp = dirname($file).'/.'.basename($file).'.'.getmypid();
    $written = \file_put_contents($tmp, $data, $flags, $context);
    if ($written === false || !\rename($tmp, $file)) {
        @\unlink($tmp);
        return false;
    }
    return $written;
}

// Laravel 8 and 9 write both files from DownCommand; 10 and later write
// the down file through Illuminate\Foundation\FileBasedMaintenanceMode.
namespace Illuminate\Foundation\Console;

function file_put_contents($file, $data, $flags = 0, $context = null)
{
    return \AtomicDeploy\put_contents_atomically($file, $data, $flags, $context);
}

namespace Illuminate\Foundation;

function file_put_contents($file, $data, $flags = 0, $context = null)
{
    return \AtomicDeploy\put_contents_atomically($file, $data, $flags, $context);
}
PHP
  php -d auto_prepend_file="$atomic_writes" artisan down || { rm -f "$atomic_writes"; exit 1; }
  rm -f "$atomic_writes"
fi
