<?php

use App\Http\Controllers\StatusController;
use Illuminate\Support\Facades\Route;

Route::get('/', [StatusController::class, 'index']);
Route::get('/health', [StatusController::class, 'health']);
Route::get('/about', [StatusController::class, 'about']);
Route::match(['get', 'post'], '/ping', [StatusController::class, 'ping']);
Route::get('/pings', [StatusController::class, 'pings']);
