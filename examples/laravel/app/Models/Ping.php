<?php

namespace App\Models;

use Illuminate\Database\Eloquent\Model;

class Ping extends Model
{
    protected $fillable = ['queued_by', 'handled_by'];
}
