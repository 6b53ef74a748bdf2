<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

// Additive only: the release that is still live while the next one migrates
// must keep working with the new schema (zero downtime).
return new class extends Migration
{
    public function up()
    {
        Schema::create('pings', function (Blueprint $table) {
            $table->id();
            $table->string('queued_by', 32);
            $table->string('handled_by', 32);
            $table->timestamps();
        });
    }

    public function down()
    {
        Schema::dropIfExists('pings');
    }
};
