<?php

// Shown by GET / and /about. Change it between deploys to see which code
// (and which cached configuration) a request ran.
return [
    'build' => 1,
];
